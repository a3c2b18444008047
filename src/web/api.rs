//! `VenueMesh`: the one entry point of the package. Thin wrappers, camelCase
//! names, typed errors; every JS value conversion lives in the shell.

use std::cell::RefCell;
use std::rc::Rc;

use js_sys::Function;
use wasm_bindgen::prelude::*;

use super::broker::{self, LinkRef};
use super::clock::{monotonic_ms, random_seed, wall_ms};
use super::device::{self, Battery};
use super::errors::{js_error, ErrorCode};
use super::idb;
use super::js::{ObjBuilder, Options};
use super::listeners::{call_all, keep_alive, listen, release};
use super::mesh_driver::{self, DriverRef, MeshDriver, MESH_EVENTS};
use super::rtc::WebRtcUse;
use super::meta;
use super::queue_api::CommandQueue;
use super::mqtt_api::{client_stats_js, reason_str};
use super::stats::{mesh_stats_js, LocalRoutes, ShellSecurity};
use crate::election;
use crate::envelope::is_valid_id;
use crate::mesh::{MeshConfig, MeshNode};
use crate::mqtt::{Client, ClientConfig, EndpointConfig, Event, QoS, SessionConfig, Will};
use crate::outbox::Event as OutboxEvent;
use crate::rng::Rng;
use crate::score::{wifi_quality_from_link, DeviceInfo, DeviceKind};

/// Room for a PUBLISH's fixed header (5), topic (2 + at most ~200 bytes for
/// `vm/{venue}/dev/{device}/…`) and packet id (2) around an envelope.
const MAX_PUBLISH_HEADER: usize = 512;

/// The library version (the crate's `Cargo.toml` version).
#[wasm_bindgen]
pub fn version() -> String {
    crate::VERSION.to_string()
}

#[wasm_bindgen(typescript_custom_section)]
const TS_MESH: &'static str = r#"
/** What the host app knows about the device (Safari has no Battery or Network Information API). */
export interface DeviceInfoInput {
  /** "kiosk" | "ipad" | "pos" | "phone" | "other" (unknown names count as "other"). */
  kind?: "kiosk" | "ipad" | "pos" | "phone" | "other";
  charging?: boolean;
  /** 0..100 */
  batteryPercent?: number;
  /** 0..10; without it the broker round trip and loss stand in. */
  wifiQuality?: number;
}
/** Options of `VenueMesh.open()`. */
export interface OpenOptions {
  /** The venue (shop, salon, festival site): 1-64 characters of A-Z a-z 0-9 . _ - */
  venue: string;
  /** Ordered broker list, local first: e.g. ["ws://192.168.1.10:9001", "wss://mqtt.example.com/mqtt"]. */
  brokers: string | string[];
  /** Broker credentials (the device token). */
  username?: string;
  password?: string;
  /** IndexedDB database name; default `venuemesh-{venue}`. */
  dbName?: string;
  /** Per broker attempt, default 2000. */
  connectTimeoutMs?: number;
  deviceInfo?: DeviceInfoInput;
  /** Heartbeat period, default 5000 (the seed); 300 gives hub failover under 2 s on a hung hub. */
  heartbeatIntervalMs?: number;
  /** A peer is gone after this many silent heartbeat periods; default 3. */
  missedHeartbeats?: number;
  /** How long a claimer waits for better claims before acting as hub; default 1000, or half of heartbeatIntervalMs (≥ 100) when that is given. Must exceed twice the one-way network delay. */
  claimWindowMs?: number;
  /** Copies of each command, counting its origin (default 3); `peer_ack` = a majority of them durable. */
  replicationFactor?: number;
  /** The hub uploads at least this often (default 30000), and at once when a batch is full. */
  drainIntervalMs?: number;
  /** Commands per upload batch (default 200). */
  uploadBatchSize?: number;
  /** Upload to your own backend instead of the broker's `vm/{venue}/up` topic: called on the hub with
   * a batch; resolve once the cloud has stored every command (idempotently, by `id`) with the cloud's signed
   * receipt for them (bytes, base64, or `{ receipt }`): only a valid receipt makes them `cloud_ack`.
   * Reject to retry later. */
  upload?: (batch: UploadBatch) => Promise<Uint8Array | string | { receipt: Uint8Array | string }>;
  /** This device's credential bundle (from the venue's server or `VenueMesh.join`), checked against the key
   * `createPairingRequest()` made and kept for later starts; without it, the stored one (`NOT_PAIRED` if none). */
  credentials?: string | CredentialBundle;
  /** Accept and open WebRTC data channels to peers (default true); false: broker and tabs only. Browsers without
   * RTCPeerConnection are detected and treated as false (`getDetailedStats().routes.webrtc` says "unavailable"). */
  webrtc?: boolean;
}
/** An application message (`send`), delivered exactly once and in the sender's order. */
export interface MeshMessage {
  from: string;
  /** The room, for room messages; null for direct ones. */
  room: string | null;
  /** The sender's message id (unique per sender and life). */
  id: number;
  payload: Uint8Array;
  /** The payload as UTF-8 text, or null if it is not valid UTF-8. */
  text: string | null;
  /** Released after later messages of the same sender (its gap was given up on). */
  late: boolean;
}
/** One route to one peer in `getDetailedStats().routes`. */
export interface RouteStats {
  route: "tab" | "rtc" | "broker";
  up: boolean;
  breaker: "closed" | "open" | "half-open";
  srttMs: number | null; rttvarMs: number; rtoMs: number; deliveryRatio: number | null; trips: number;
  /** Smallest and latest round trip, ms (`null` before the first). */
  rttMinMs: number | null; rttLatestMs: number | null;
  msgsOut: number; bytesOut: number; msgsIn: number; bytesIn: number; acked: number; timeouts: number; probes: number;
}
export interface RoutesStats {
  /** "on": data channels offered and used; "off": the `webrtc: false` option; "unavailable": this browser has no
   * RTCPeerConnection (WebKit builds without WebRTC, web views with it switched off), so peers are reached through tabs and the broker. */
  webrtc: "on" | "off" | "unavailable";
  /** "on": tabs of this browser profile reach each other over BroadcastChannel; "unavailable": no BroadcastChannel. */
  tab: "on" | "unavailable";
  brokerUp: boolean; pending: number; held: number; seen: number;
  peers: { device: string; best: "tab" | "rtc" | "broker" | null; rtc: "idle" | "connecting" | "requested" | "open"; pending: number; routes: RouteStats[] }[];
  counters: { sent: number; transmissions: number; resends: number; acked: number; undeliverable: number; roomBroadcasts: number;
    dataIn: number; delivered: number; duplicates: number; late: number; gapsSkipped: number; probesSent: number };
}
/** A batch the hub uploads (`upload` option). Command ids are the idempotency keys. */
export interface UploadBatch {
  batch: number;
  /** Each with its origin's Ed25519 signature over the command (PROTOCOL.md Part 4): the backend checks it. */
  commands: { id: string; origin: string; topic: string; payload: Uint8Array; hlc: string; createdAt: number; originSig: Uint8Array }[];
  /** The certificate chain of each origin in the batch (origin → chain bytes), to check `originSig` against the venue root. */
  certificates: Record<string, Uint8Array>;
}
/** Replication and upstream counters in `getDetailedStats()`. */
export interface ReplicationStats {
  held: number; belowQuorum: number; tentative: number; storing: number; requestsSent: number; acksReceived: number;
  replicasStored: number; batchesSent: number; batchesFailed: number; cloudAcked: number;
}
export interface HubTerm { number: number; score: number; hub: string }
/** Events of `VenueMesh.on()` and what their callbacks receive. */
export interface MeshEvents {
  connected: ConnectedEvent;
  disconnected: DisconnectedEvent;
  becomeHub: { term: HubTerm };
  loseHub: { term: HubTerm; newHub: string | null };
  hubChanged: { hub: string | null; term: HubTerm | null };
  peerJoined: { device: string; score: number };
  peerLeft: { device: string; reason: "leave" | "will" | "silent" };
  scoreChanged: { score: number };
  clockSkew: { skewed: boolean; offsetMs: number };
  /** This device's commands now held durably by a majority of the replication factor
   * (fired when the last needed SYNC_ACK arrives; `queue`'s `statusChanged` follows once written). */
  peerAck: { ids: string[] };
  /** The cloud stored these commands (own or replicas held here). */
  cloudAck: { ids: string[] };
  /** An application message (`send`), exactly once. */
  message: MeshMessage;
}
/** Typed overload of `on()` (declaration merging with the class). */
export interface VenueMesh {
  on<K extends keyof MeshEvents>(event: K, callback: (event: MeshEvents[K]) => void): () => void;
}
export interface PeerInfo { device: string; score: number; lastSeenMsAgo: number; hub: string | null; term: HubTerm | null; queueDepth: number; kind: string | null }
export interface DetailedStats {
  deviceId: string;
  venue: string;
  role: "follower" | "candidate" | "hub";
  hub: HubTerm | null;
  term: HubTerm | null;
  score: number;
  scoreBreakdown: { base: number; uptime: number; wifi: number; power: number };
  deviceInfo: { kind: string; charging: boolean | null; batteryPercent: number | null; wifiQuality: number | null };
  uptimeMs: number;
  peers: PeerInfo[];
  /** Envelopes received: `duplicates` are second copies of accepted ones (another route, MQTT redelivery), dropped and harmless;
   * `replays` are older than the replay window and count as rejected. */
  security: {
    accepted: number; verified: number; badSignature: number; malformed: number;
    /** Encrypted under a content-key epoch this device does not hold (the only key id an envelope carries). */
    unknownKey: number; wrongVenue: number;
    duplicates: number; replays: number; counterJumps: number; sendersEvicted: number; senderMismatch: number;
    kindMismatch: number; badBody: number; stale: number; future: number; clockAhead: number;
    rtcShed: number; rtcEvicted: number; peersEvicted: number; peersShed: number; oversized: number;
    /** Trust refusals (issue #15), each envelope or command counted once: no chain for the sender, a chain not
     * leading to the venue root (or naming another device), a revoked key, a body that does not decrypt, a kind
     * the sender's role may not send (CLOUD_ACK from a device), a command its origin did not sign, a receipt
     * not from the cloud or not matching our record. */
    untrusted: number; unknownSender: number; badChain: number; revoked: number;
    wrongRole: number; badOriginSig: number; badReceipt: number; receipts: number; crlsApplied: number; crlsRepublished: number; badCrl: number;
    chainsEvicted: number; revokedKeys: number;
    /** Content key rotation: `keyEpoch` is the epoch this device sends under, `keyEpochs` every epoch it can read
     * (current, previous until its retirement, scheduled); `keyUpdates` new epochs taken, `badKeyUpdate` updates
     * refused (bad signature, issuer not admin or cloud), `keyUpdateNotForUs` newer epochs not wrapped to this device. */
    keyEpoch: number; keyEpochs: number[]; keyUpdates: number; badKeyUpdate: number; keyUpdateNotForUs: number;
  };
  clock: { offsetMs: number | null; skewed: boolean };
  /** How late this device's own latest heartbeat came back through the broker, and the largest such lag (ms): how far
   * behind its input is. While it is over half a heartbeat interval, no peer is declared gone by silence. */
  receiveLag: { lastMs: number; maxMs: number };
  /** Election running: the broker is connected, or a data channel or tab reaches a peer (direct-only mesh). */
  reachable: boolean;
  /** `direct`: election and replication envelopes on data channels and tabs (part of `routing`). */
  traffic: Record<"presence" | "heartbeat" | "hubClaim" | "replication" | "routing" | "direct", { msgsIn: number; bytesIn: number; msgsOut: number; bytesOut: number }>;
  replication: ReplicationStats;
  broker: ConnectionStats;
  queue: QueueStats;
  routes: RoutesStats;
}
"#;

const OPEN_KEYS: &[&str] = &[
    "venue", "credentials", "brokers", "username", "password", "dbName", "connectTimeoutMs", "deviceInfo",
    "heartbeatIntervalMs", "missedHeartbeats", "claimWindowMs", "replicationFactor", "drainIntervalMs",
    "uploadBatchSize", "upload", "webrtc", "stateRetentionDays",
];
const DEVICE_KEYS: &[&str] = &["kind", "charging", "batteryPercent", "wifiQuality"];

/// What the host app said about the device; it wins over browser APIs.
#[derive(Default, Clone)]
struct HostInfo {
    kind: Option<DeviceKind>,
    charging: Option<bool>,
    battery_percent: Option<f64>,
    wifi_quality: Option<f64>,
}

impl HostInfo {
    fn merge_from(&mut self, v: &JsValue) -> Result<(), JsValue> {
        let o = Options::new(v, "deviceInfo", DEVICE_KEYS, false)?;
        if let Some(k) = o.string("kind")? {
            self.kind = Some(DeviceKind::from_name(&k));
        }
        if let Some(c) = o.bool("charging")? {
            self.charging = Some(c);
        }
        // The limit is spelled out as text: formatting an f64 would pull
        // float printing (~15 KB) into the module for one error message.
        let num = |key: &str, max: f64, max_text: &str| -> Result<Option<f64>, JsValue> {
            match o.raw(key).map(|x| x.as_f64()) {
                None => Ok(None),
                Some(Some(n)) if (0.0..=max).contains(&n) => Ok(Some(n)),
                _ => Err(js_error(ErrorCode::InvalidOptions, &format!("deviceInfo.{key} must be a number from 0 to {max_text}"), None)),
            }
        };
        if let Some(b) = num("batteryPercent", 100.0, "100")? {
            self.battery_percent = Some(b);
        }
        if let Some(w) = num("wifiQuality", 10.0, "10")? {
            self.wifi_quality = Some(w);
        }
        Ok(())
    }

    /// Host values first, then the browser's APIs where it has them.
    fn device_info(&self, battery: Option<Battery>) -> DeviceInfo {
        DeviceInfo {
            kind: self.kind.unwrap_or(DeviceKind::Other),
            charging: self.charging.or(battery.map(|b| b.charging)),
            battery_percent: self.battery_percent.or(battery.map(|b| b.percent)),
            uptime_ms: 0,
            wifi_quality: self.wifi_quality.or_else(|| device::network_rtt_ms().map(|rtt| wifi_quality_from_link(rtt, 0.0))),
        }
    }
}

/// One member of a venue's mesh. Create it with `await VenueMesh.open({...})`.
#[wasm_bindgen]
pub struct VenueMesh {
    pub(super) driver: DriverRef,
    state: Rc<RefCell<MeshSide>>,
    queue: CommandQueue,
    /// Credentials and open invites (`pairing_api`).
    pub(super) trust: super::pairing_api::TrustRef,
}

/// What the API keeps beside the driver.
struct MeshSide {
    venue: String,
    device_id: String,
    host: HostInfo,
    battery: Option<Battery>,
    battery_manager: Option<JsValue>,
    _battery_listener: Option<Closure<dyn FnMut()>>,
    _pagehide: Option<Closure<dyn FnMut()>>,
    url: Option<String>,
    closed: bool,
    /// Key of the keep-alive entry (see `listeners::keep_alive`).
    live: u64,
}

fn election_config(o: &Options) -> Result<election::Config, JsValue> {
    let mut c = election::Config::default();
    if let Some(hb) = o.uint("heartbeatIntervalMs", 3_600_000)? {
        if hb < 50 {
            return Err(js_error(ErrorCode::InvalidOptions, "heartbeatIntervalMs must be at least 50", None));
        }
        c.heartbeat_interval = hb;
        // Half a heartbeat (at least 100 ms): far above twice the one-way
        // delay on a venue LAN, which is what the window must cover
        // (docs/election.md), and short enough for sub-300 ms failover.
        c.claim_window = (hb / 2).max(100);
    }
    if let Some(m) = o.uint("missedHeartbeats", 100)? {
        c.missed_heartbeats = m.max(1);
    }
    if let Some(w) = o.uint("claimWindowMs", 600_000)? {
        c.claim_window = w;
    }
    Ok(c.sanitized())
}

#[wasm_bindgen]
impl VenueMesh {
    /// Opens the local database (creating the device identity on first use),
    /// restores the mesh state, and starts connecting to the brokers.
    /// Resolves without waiting for a broker: the mesh works offline and
    /// connects when it can.
    #[wasm_bindgen(js_name = open, unchecked_return_type = "Promise<VenueMesh>")]
    pub fn open_js(#[wasm_bindgen(unchecked_param_type = "OpenOptions")] options: JsValue) -> js_sys::Promise {
        super::js::promise(Box::pin(async move { Self::open(options).await.map(JsValue::from) }))
    }
}

impl VenueMesh {
    /// `VenueMesh.open` (the export above goes through `js::promise`).
    pub async fn open(options: JsValue) -> Result<VenueMesh, JsValue> {
        let o = Options::new(&options, "VenueMesh.open options", OPEN_KEYS, false)?;
        let venue = o.required_string("venue")?;
        if !is_valid_id(&venue) {
            return Err(js_error(ErrorCode::InvalidOptions, "`venue` must be 1-64 characters of A-Z a-z 0-9 . _ -", None));
        }
        let brokers = o.string_list("brokers")?.unwrap_or_default();
        if brokers.is_empty() {
            return Err(js_error(ErrorCode::InvalidOptions, "`brokers` must list at least one ws:// or wss:// URL (local first)", None));
        }
        let timeout = o.uint("connectTimeoutMs", 600_000)?.unwrap_or(2_000);
        let db_name = o.string("dbName")?.unwrap_or_else(|| format!("venuemesh-{venue}"));
        let mut host = HostInfo::default();
        if let Some(d) = o.raw("deviceInfo") {
            host.merge_from(&d)?;
        }
        let election = election_config(&o)?;
        let mut replication = crate::replication::Config::default();
        if let Some(f) = o.uint("replicationFactor", 16)? {
            if f == 0 {
                return Err(js_error(ErrorCode::InvalidOptions, "replicationFactor must be 1 to 16", None));
            }
            replication.factor = f as usize;
        }
        if let Some(ms) = o.uint("drainIntervalMs", 86_400_000)? {
            replication.drain_interval_ms = ms.max(10);
        }
        if let Some(n) = o.uint("uploadBatchSize", 65_535)? {
            replication.batch_max = n.max(1) as usize;
        }
        let uploader = match o.raw("upload") {
            None => None,
            Some(f) => Some(f.dyn_into::<Function>().map_err(|_| js_error(ErrorCode::InvalidOptions, "`upload` must be a function", None))?),
        };
        if uploader.is_some() {
            replication.upstream = crate::replication::Upstream::Hook;
        }
        let webrtc = WebRtcUse::detect(o.bool("webrtc")?.unwrap_or(true));
        // Shared state: tombstones and audit kept this many days (default 30).
        let mut state_cfg = crate::state::Config::new("set-by-the-node");
        if let Some(days) = o.uint("stateRetentionDays", 3_650)? {
            let ms = days.max(1) * 86_400_000;
            (state_cfg.tombstone_retention_ms, state_cfg.audit_retention_ms) = (ms, ms);
        }
        let username = o.string("username")?;
        let password = o.string("password")?;

        let db = idb::open(&db_name).await?;
        // This device's key (IndexedDB, wrapped) and its bundle (given now,
        // or stored by an earlier open): no valid credentials, no mesh.
        let credentials = match super::trust_api::credentials(&db, &venue, o.raw("credentials")).await {
            Ok(c) => c,
            Err(e) => {
                db.close(); // a leaked connection would block the next open's upgrade
                return Err(e);
            }
        };
        // The mesh id is the certificate's subject.
        let device_id = credentials.bundle.device.clone();
        let creds = Some(credentials.clone());
        // The queue keeps its own connection (it reopens it after WebKit
        // drops it); ids start with the device id.
        let (queue, held) = CommandQueue::open_keeping(&db_name, Some(device_id.chars().take(8).collect()), Box::new(|_| {}), true).await?;
        let state = meta::load_mesh_state(&db).await.map_err(|e| e.to_js("could not read the mesh state"))?;

        let trust_state = super::trust_api::load_trust_state(&db).await;
        let seed = random_seed();
        let mut config = MeshConfig::new(credentials, host.device_info(None), super::clock::random_bytes32());
        config.election = election;
        config.replication = replication;
        config.state = Some(state_cfg);
        if webrtc == WebRtcUse::On {
            config.capabilities = config.capabilities.with(crate::mesh::Capabilities::WEBRTC);
        }
        let mut node = MeshNode::new(config, Rng::new(seed ^ 0x5eed), monotonic_ms(), wall_ms())
            .map_err(|e| js_error(ErrorCode::InvalidOptions, &e.to_string(), None))?;
        node.handle_restored(&state, monotonic_ms());
        if let Some(t) = &trust_state {
            node.handle_restored_trust(t, wall_ms());
        }
        // A record still `pending` has not reached the quorum: an own command
        // is replicated again (and marked `peer_ack` when a majority holds it),
        // a replica is a tentative copy (issue #15) that asks its origin.
        let held = held.into_iter().map(|r| {
            let peer = r.status != crate::outbox::Status::Pending;
            (r, peer)
        }).collect::<Vec<_>>();
        node.handle_restored_records(held, monotonic_ms(), wall_ms());
        let loaded = super::state_idb::load(&db).await.map_err(|e| e.to_js("could not read the shared state"))?;
        node.handle_restored_state(loaded, monotonic_ms(), wall_ms());

        // Each tab is its own MQTT client: venue, device and a per-open
        // suffix (PROTOCOL.md (Part 1)), so two tabs of one device don't
        // take over each other's broker session.
        let client_id = format!("vm:{venue}:{device_id}:{:06x}", seed & 0xff_ffff);
        let (will_topic, will_payload, will_qos, will_retain) = node.will();
        let mut session = SessionConfig::new(client_id);
        session.measure_rtt_after_connect = true;
        session.username = username;
        session.password = password.map(String::into_bytes);
        // Our own heartbeats loop back every `I`: receive silence of 1.5·I
        // means a stalled link (PROTOCOL.md Part 1 §5; issue #16), noticed
        // within 1.5·I + the ping timeout — with the defaults 12.5 s, before
        // the election's silence bound G = 15 s would drop every peer.
        // The largest packet the mesh ever gets is one envelope at its size
        // limit plus the PUBLISH header and topic: anything bigger is an
        // attack or a mistake, refused unread by the socket (issue #16).
        session.max_packet_size = node.config().limits.max_envelope().saturating_add(MAX_PUBLISH_HEADER);
        let beat = node.config().election.heartbeat_interval.max(1);
        session.recv_silence_ms = Some(beat.saturating_add(beat / 2));
        session.will = Some(Will {
            topic: will_topic,
            payload: will_payload,
            qos: if will_qos == 0 { QoS::AtMostOnce } else { QoS::AtLeastOnce },
            retain: will_retain,
        });
        let endpoints = brokers.iter().map(|u| EndpointConfig::new(u.clone(), timeout)).collect::<Vec<_>>();
        let client = Client::new(ClientConfig::new(endpoints, session), Rng::new(seed), monotonic_ms())
            .map_err(|e| js_error(ErrorCode::InvalidOptions, &e.to_string(), None))?;
        let link = broker::new_link(client);
        for filter in node.subscriptions() {
            // Kept by the client and re-sent after every reconnect.
            let _ = link.borrow_mut().client.subscribe(&filter, QoS::AtLeastOnce, monotonic_ms());
        }

        let driver = MeshDriver::new(node, link.clone(), db);
        {
            let mut d = driver.borrow_mut();
            d.queue = Some(queue.clone());
            d.uploader = uploader;
        }
        let side = Rc::new(RefCell::new(MeshSide {
            venue,
            device_id,
            host,
            battery: None,
            battery_manager: None,
            _battery_listener: None,
            _pagehide: None,
            url: None,
            closed: false,
            live: 0,
        }));
        side.borrow_mut().live = keep_alive(Box::new((driver.clone(), side.clone())));
        let trust = Rc::new(RefCell::new(super::pairing_api::TrustSide::new(&side.borrow().venue, creds)));
        let mesh = VenueMesh { driver: driver.clone(), state: side.clone(), queue, trust };
        mesh.connect_link_events(&link);
        // Committed commands go to the replicator (own: replicate them;
        // replicas: acknowledge them); heartbeats carry the outbox depth.
        let weak = Rc::downgrade(&driver);
        mesh.queue.set_stamp(Rc::new(move |wall| Some(weak.upgrade()?.try_borrow_mut().ok()?.node.next_hlc(wall))));
        let (weak_driver, q, me) = (Rc::downgrade(&driver), mesh.queue.clone(), mesh.state.borrow().device_id.clone());
        mesh.queue.set_hook(Rc::new(move |event| {
            let Some(d) = weak_driver.upgrade() else { return };
            let depth = q.pending_count();
            {
                let Ok(mut dm) = d.try_borrow_mut() else { return };
                dm.node.set_queue_depth(u64::from(depth));
                let now = monotonic_ms();
                match event {
                    OutboxEvent::Enqueued { records, .. } => {
                        let ids: Vec<_> = records.iter().filter(|r| r.origin.is_some()).map(|r| r.id.clone()).collect();
                        dm.node.handle_stored(&ids, now);
                        let own = mesh_driver::own_cmds(records, &me);
                        if !own.is_empty() {
                            dm.node.handle_committed(own, now);
                        }
                    }
                    OutboxEvent::EnqueueFailed { tickets, .. } => {
                        let ids: Vec<_> = tickets.iter().map(|t| t.id().clone()).collect();
                        dm.node.handle_store_failed(&ids, now);
                    }
                    _ => return,
                }
            }
            mesh_driver::drive(&d);
        }));
        // Own commands whose write has started: their copies leave now, in
        // parallel with the commit (tentative until it is done).
        let (weak_driver, me) = (Rc::downgrade(&driver), mesh.state.borrow().device_id.clone());
        mesh.queue.set_writing(Rc::new(move |records| {
            let Some(d) = weak_driver.upgrade() else { return };
            {
                let Ok(mut dm) = d.try_borrow_mut() else { return };
                dm.node.handle_committing(mesh_driver::own_cmds(&records, &me), monotonic_ms());
            }
            mesh_driver::drive(&d);
        }));
        {
            let s = mesh.state.borrow();
            super::routes_api::start(&driver, &s.venue, &s.device_id, webrtc);
        }
        broker::listen_for_wake(&link);
        broker::drain(&link);
        mesh_driver::drive(&driver);
        mesh.watch_page();
        mesh.watch_battery().await;
        Ok(mesh)
    }

    /// Link events: transport up/down and messages go to the node.
    fn connect_link_events(&self, link: &LinkRef) {
        let driver = Rc::downgrade(&self.driver);
        let side = Rc::downgrade(&self.state);
        let trust = Rc::downgrade(&self.trust);
        let weak_link = Rc::downgrade(link);
        broker::set_sink(
            link,
            Rc::new(move |events: Vec<Event>| {
                let (Some(driver), Some(side)) = (driver.upgrade(), side.upgrade()) else { return };
                for event in events {
                    let app = match event {
                        Event::Message { topic, payload, .. } if super::pairing_api::is_pair_topic(&side.borrow().venue, &topic) => {
                            if let (Some(trust), Some(link)) = (trust.upgrade(), weak_link.upgrade()) {
                                super::pairing_api::on_pair_message(&trust, &link, &topic, &payload);
                            }
                            None
                        }
                        Event::Message { topic, payload, retain, .. } => {
                            // Handled in budgeted turns (`inbox.rs`, issue #16).
                            super::inbox::push(&driver, topic, payload.to_vec(), retain);
                            continue;
                        }
                        Event::Connected { url, .. } => {
                            side.borrow_mut().url = Some(url.clone());
                            driver.borrow_mut().node.handle_transport(true, monotonic_ms());
                            Some(("connected", ObjBuilder::new().set("url", url).build()))
                        }
                        Event::Disconnected { reason } => {
                            side.borrow_mut().url = None;
                            driver.borrow_mut().node.handle_transport(false, monotonic_ms());
                            Some(("disconnected", ObjBuilder::new().set("reason", reason_str(&reason)).build()))
                        }
                        _ => None,
                    };
                    mesh_driver::drive(&driver);
                    if let Some((name, arg)) = app {
                        let targets = driver.borrow().events.targets(name);
                        call_all(&targets, &[&arg]);
                    }
                }
                super::inbox::schedule(&driver);
            }),
        );
    }

    /// A page being hidden for good leaves the mesh cleanly (the retained
    /// presence is cleared at once instead of waiting for the Will).
    fn watch_page(&self) {
        let Some(window) = web_sys::window() else { return };
        let driver = Rc::downgrade(&self.driver);
        let side = Rc::downgrade(&self.state);
        let f = Closure::<dyn FnMut()>::new(move || {
            if let (Some(driver), Some(side)) = (driver.upgrade(), side.upgrade()) {
                close_mesh(&driver, &side);
            }
        });
        let _ = window.add_event_listener_with_callback("pagehide", f.as_ref().unchecked_ref());
        self.state.borrow_mut()._pagehide = Some(f);
    }

    async fn watch_battery(&self) {
        let Some(manager) = device::battery_manager().await else { return };
        let driver = Rc::downgrade(&self.driver);
        let side = Rc::downgrade(&self.state);
        let m2 = manager.clone();
        let listener = device::watch_battery(&manager, move || {
            if let (Some(driver), Some(side)) = (driver.upgrade(), side.upgrade()) {
                side.borrow_mut().battery = device::battery_of(&m2);
                push_device_info(&driver, &side);
            }
        });
        {
            let mut s = self.state.borrow_mut();
            s.battery = device::battery_of(&manager);
            s.battery_manager = Some(manager);
            s._battery_listener = listener;
        }
        push_device_info(&self.driver, &self.state);
    }

    pub(super) fn check_open(&self) -> Result<(), JsValue> {
        if self.state.borrow().closed {
            return Err(js_error(ErrorCode::Closed, "the mesh is closed", None));
        }
        Ok(())
    }

}

#[wasm_bindgen]
impl VenueMesh {
    /// This device's id: a UUID v4 created once and kept in IndexedDB.
    #[wasm_bindgen(getter, js_name = deviceId)]
    pub fn device_id(&self) -> String {
        self.state.borrow().device_id.clone()
    }

    /// The venue this member belongs to.
    #[wasm_bindgen(getter)]
    pub fn venue(&self) -> String {
        self.state.borrow().venue.clone()
    }

    /// Whether a broker connection is up.
    #[wasm_bindgen(getter)]
    pub fn connected(&self) -> bool {
        self.state.borrow().url.is_some()
    }

    /// Whether this device currently acts as the venue's hub.
    #[wasm_bindgen(getter, js_name = isHub)]
    pub fn is_hub(&self) -> bool {
        self.driver.borrow().node.is_hub()
    }

    /// The hub this device recognizes (device id), or `null`.
    #[wasm_bindgen(getter, unchecked_return_type = "string | null")]
    pub fn hub(&self) -> JsValue {
        self.driver.borrow().node.hub().map(|t| JsValue::from(t.hub.as_str())).unwrap_or(JsValue::NULL)
    }

    /// This device's hub score (points).
    #[wasm_bindgen(getter)]
    pub fn score(&self) -> f64 {
        self.driver.borrow().node.score() as f64 / 1000.0
    }

    /// Updates what the host app knows about the device (kind, charging,
    /// battery, Wi-Fi quality); fields left out keep their value.
    #[wasm_bindgen(js_name = setDeviceInfo)]
    pub fn set_device_info(
        &self,
        #[wasm_bindgen(unchecked_param_type = "DeviceInfoInput")] info: JsValue,
    ) -> Result<(), JsValue> {
        let mut host = self.state.borrow().host.clone();
        host.merge_from(&info)?;
        self.state.borrow_mut().host = host;
        push_device_info(&self.driver, &self.state);
        Ok(())
    }

    /// Subscribes `callback` to `event`; returns the function that
    /// unsubscribes it. See `MeshEvents` for the events and their payloads.
    #[wasm_bindgen(unchecked_return_type = "() => void")]
    pub fn on(
        &self,
        #[wasm_bindgen(unchecked_param_type = "keyof MeshEvents")] event: &str,
        #[wasm_bindgen(unchecked_param_type = "(event: MeshEvents[keyof MeshEvents]) => void")] callback: Function,
    ) -> Result<Function, JsValue> {
        if !(event == "connected" || event == "disconnected" || MESH_EVENTS.contains(&event)) {
            let msg = format!("unknown event `{event}` (known: connected, disconnected, {})", MESH_EVENTS.join(", "));
            return Err(js_error(ErrorCode::InvalidArgument, &msg, None));
        }
        Ok(listen(&self.driver, |d| &mut d.events, event, callback))
    }

    /// `on("becomeHub", cb)`: called once each time this device starts acting as hub.
    #[wasm_bindgen(js_name = onBecomeHub, unchecked_return_type = "() => void")]
    pub fn on_become_hub(
        &self,
        #[wasm_bindgen(unchecked_param_type = "(event: MeshEvents[\"becomeHub\"]) => void")] callback: Function,
    ) -> Result<Function, JsValue> {
        self.on("becomeHub", callback)
    }

    /// `on("loseHub", cb)`: called once each time this device stops acting as hub.
    #[wasm_bindgen(js_name = onLoseHub, unchecked_return_type = "() => void")]
    pub fn on_lose_hub(
        &self,
        #[wasm_bindgen(unchecked_param_type = "(event: MeshEvents[\"loseHub\"]) => void")] callback: Function,
    ) -> Result<Function, JsValue> {
        self.on("loseHub", callback)
    }

    /// A snapshot of the member's state for dashboards and debugging.
    #[wasm_bindgen(js_name = getDetailedStats, unchecked_return_type = "DetailedStats")]
    pub fn get_detailed_stats(&self) -> JsValue {
        let d = self.driver.borrow();
        let broker_stats = client_stats_js(&d.link.borrow());
        let s = self.state.borrow();
        let info = s.host.device_info(s.battery);
        let local = LocalRoutes { webrtc: d.webrtc.name(), tab: d.tabs.is_some(), reconnects: &d.peer_reconnects };
        let keys = d.node.trust().content();
        // Drop reasons the shell sees (the core's are in `security` already) and its keys.
        let shell = ShellSecurity {
            oversized: d.link.borrow().oversized_frames as f64,
            shed: d.inbox.shed as f64,
            revoked_keys: d.node.trust().revoked().len() as f64,
            key_epoch: keys.epoch(),
            key_epochs: keys.all().iter().map(|(e, _)| JsValue::from(f64::from(*e))).collect(),
        };
        mesh_stats_js(&d.node.stats(), &info, monotonic_ms(), broker_stats, local, shell, self.queue.stats())
    }

    /// The durable command queue (IndexedDB outbox and inbox) of this device.
    #[wasm_bindgen(getter)]
    pub fn queue(&self) -> CommandQueue {
        self.queue.clone()
    }

    /// Commits a command to the durable queue; resolves with its id once it
    /// is in IndexedDB (strict durability). Same as `mesh.queue.enqueue()`.
    #[wasm_bindgen(unchecked_return_type = "Promise<string>")]
    pub fn enqueue(
        &self,
        #[wasm_bindgen(unchecked_param_type = "string")] topic: JsValue,
        #[wasm_bindgen(unchecked_param_type = "string | Uint8Array | ArrayBuffer")] payload: JsValue,
    ) -> js_sys::Promise {
        self.queue.enqueue(topic, payload, JsValue::UNDEFINED)
    }

    /// Leaves the mesh (clears this device's presence, DISCONNECT) and
    /// closes the database. Safe to call twice.
    pub fn close(&self) {
        close_mesh(&self.driver, &self.state);
        self.queue.close();
    }
}

fn push_device_info(driver: &DriverRef, side: &Rc<RefCell<MeshSide>>) {
    let info = {
        let s = side.borrow();
        s.host.device_info(s.battery)
    };
    driver.borrow_mut().node.set_device_info(info, monotonic_ms());
    mesh_driver::drive(driver);
}

fn close_mesh(driver: &DriverRef, side: &Rc<RefCell<MeshSide>>) {
    {
        let mut s = side.borrow_mut();
        if s.closed {
            return;
        }
        s.closed = true;
        s._battery_listener = None;
    }
    driver.borrow_mut().node.leave(monotonic_ms());
    mesh_driver::drive(driver);
    let link = driver.borrow().link.clone();
    // Send the clearing presence now (not in a microtask: the page may be
    // going away), then DISCONNECT so the broker does not fire the Will.
    broker::drain(&link);
    link.borrow_mut().client.close(monotonic_ms());
    broker::drain(&link);
    broker::shutdown(&link);
    {
        let mut d = driver.borrow_mut();
        if let Some(db) = d.db.take() {
            db.close();
        }
        d.stop();
    }
    let live = side.borrow().live;
    release(live);
}

/// Routing (`PROTOCOL.md` Part 5); the work is in `routes_api.rs`.
#[wasm_bindgen]
impl VenueMesh {
    /// Sends `payload` (a string is UTF-8 encoded) to a joined room, or
    /// else to the device with that id. Each recipient's app gets it exactly
    /// once (`message` event), in this device's order, over the best route
    /// (tab, WebRTC data channel or broker; resent on the next route when
    /// one fails). Returns the message id.
    pub fn send(
        &self,
        to: &str,
        #[wasm_bindgen(unchecked_param_type = "string | Uint8Array | ArrayBuffer")] payload: JsValue,
    ) -> Result<f64, JsValue> {
        self.check_open()?;
        super::routes_api::send(&self.driver, to, payload)
    }

    /// Joins a room (1-8 `/`-separated levels of A-Z a-z 0-9 . _ -): its
    /// messages arrive as `message` events with `room` set. Rooms of up to
    /// 5 devices go device to device (data channels where possible).
    #[wasm_bindgen(js_name = joinRoom)]
    pub fn join_room(&self, room: &str) -> Result<(), JsValue> {
        self.check_open()?;
        super::routes_api::join_room(&self.driver, room)
    }

    /// Leaves a room (no more `message` events for it).
    #[wasm_bindgen(js_name = leaveRoom)]
    pub fn leave_room(&self, room: &str) {
        super::routes_api::leave_room(&self.driver, room)
    }

    /// The joined rooms.
    #[wasm_bindgen(getter, unchecked_return_type = "string[]")]
    pub fn rooms(&self) -> JsValue {
        super::routes_api::rooms(&self.driver)
    }
}
