//! The one door the browser shell talks to (str0m style): a [`Session`]
//! composed with [`Endpoints`], so the shell only maps socket ids to
//! WebSocket objects and never decides protocol things.
//!
//! # The run loop
//! After *every* input or mutation, drain [`Client::poll_output`] until it
//! returns [`Output::Timeout`] or [`Output::Idle`], performing each output:
//!
//! ```
//! use venuemesh::mqtt::{Client, ClientConfig, EndpointConfig, Input, Output, SessionConfig};
//! use venuemesh::rng::Rng;
//!
//! let config = ClientConfig::new(
//!     vec![EndpointConfig::new("ws://127.0.0.1:9001", 2_000)],
//!     SessionConfig::new("vm-venue1-pos3-a1"),
//! );
//! let mut client = Client::new(config, Rng::new(42), 0).expect("valid config");
//! let mut wake_at = None;
//! loop {
//!     match client.poll_output(0) {
//!         Output::OpenSocket { id, url } => { /* new WebSocket(url, "mqtt"), remember id */ }
//!         Output::Send { id, bytes } => { /* ws(id).send(bytes): one frame */ }
//!         Output::CloseSocket { id } => { /* ws(id).close(), forget id */ }
//!         Output::Event(event) => { /* hand to the app after the loop */ }
//!         Output::Timeout(at) => { wake_at = Some(at); break }
//!         Output::Idle => break,
//!     }
//! }
//! // ... later, when the timer fires or a socket event arrives:
//! client.handle_input(Input::Timeout, 2_000);
//! # let _ = wake_at;
//! ```
//!
//! Several publishes made before the next drain go out as one `Send` (one
//! WebSocket frame): coalescing is automatic as long as the shell drains
//! once per JavaScript turn rather than once per call. A long burst should
//! not wait whole for the end of the turn, though: [`Client::poll_transmit_over`]
//! hands out what has piled up once it reaches [`COALESCE_LIMIT`], so the
//! first frames travel (and the broker forwards them) while the app is still
//! publishing the rest.

use std::collections::VecDeque;

use super::codec::{self, Decoder};
use super::error::{ConfigError, ProtocolError, PublishError, UsageError};
use super::packet::{Connect, ConnectReturnCode, Packet, QoS};
use super::session::{LostReason, PublishId, Session, SessionConfig, SessionEvent, SessionState};
use super::timing::{Deadline, RttStats};
use crate::endpoints::{BackoffConfig, EndpointConfig, Endpoints};
use crate::rng::Rng;

/// How many bytes [`Client::poll_transmit_over`] lets pile up before it
/// hands them out as one frame: 16 KiB, about 75 publishes of 200 B. Big
/// enough that a burst costs few `WebSocket.send` calls (and few frames
/// for the broker to parse), small enough that the first frame leaves after
/// a fraction of a millisecond of publishing instead of after the whole
/// burst (10,000 publishes made one 2 MB frame that nothing could read
/// until the last was encoded). Mosquitto 2.0.11 takes frames of this size
/// back to back without the stall that two small frames can cause (measured
/// from Node: 130 frames of 16 KiB as fast as one 2 MB frame), and so does
/// Aedes (`e2e-aedes`). Each frame holds whole packets.
pub const COALESCE_LIMIT: usize = 16 * 1024;

/// Names one WebSocket the shell opened on our behalf. Never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SocketId(pub u64);

/// Everything the client needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConfig {
    /// In order of preference: local broker first, then the cloud.
    pub endpoints: Vec<EndpointConfig>,
    /// The MQTT session: client id, credentials, Will, keepalive and limits.
    pub session: SessionConfig,
    /// Reconnect pacing and the switch-back probe interval.
    pub backoff: BackoffConfig,
}

impl ClientConfig {
    /// Default backoff (500 ms base, 30 s cap, 30 s probe interval).
    pub fn new(endpoints: Vec<EndpointConfig>, session: SessionConfig) -> Self {
        ClientConfig { endpoints, session, backoff: BackoffConfig::default() }
    }
}

/// What happened in the browser.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// The WebSocket's `open` event.
    SocketOpened(SocketId),
    /// A binary `message` event (an `ArrayBuffer`'s bytes).
    SocketData(SocketId, Vec<u8>),
    /// The `close` event (an `error` event is always followed by it).
    SocketClosed(SocketId),
    /// `online`, `visibilitychange` to visible, or `pageshow`: check the
    /// connection now and reconnect at once if it is down.
    Wake,
    /// The timer set from [`Output::Timeout`] fired (early or twice is harmless).
    Timeout,
}

/// What the shell must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// `new WebSocket(url, "mqtt")` with `binaryType = "arraybuffer"`.
    OpenSocket {
        /// Names the new socket in later inputs and outputs.
        id: SocketId,
        /// The endpoint's `ws://` or `wss://` URL.
        url: String,
    },
    /// One `WebSocket.send` of these bytes (one frame, many packets).
    Send {
        /// The socket to send on.
        id: SocketId,
        /// One or more whole MQTT packets.
        bytes: Vec<u8>,
    },
    /// `WebSocket.close()`; later events from this socket may still be fed
    /// in and are ignored.
    CloseSocket {
        /// The socket to close.
        id: SocketId,
    },
    /// Tell the app (after the drain, outside any borrow of the client).
    Event(Event),
    /// Nothing more to do now; call `handle_input(Input::Timeout, ..)` at
    /// this instant (same clock as `now`) or on the next input, whichever
    /// comes first. May be `<= now`: then fire at once.
    Timeout(u64),
    /// Nothing to do until the next input (no timer needed).
    Idle,
}

/// Why the connection ended (or a connect attempt failed).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DisconnectReason {
    /// No reply to PINGREQ in time: the socket was a zombie.
    KeepaliveTimeout,
    /// No CONNACK within the endpoint's connect timeout (counting from
    /// opening the socket).
    ConnectTimeout,
    /// The broker refused the CONNECT.
    Refused(ConnectReturnCode),
    /// The WebSocket closed.
    SocketClosed,
    /// The broker broke the protocol.
    Protocol(ProtocolError),
    /// Leaving a fallback endpoint for the preferred one (probe succeeded).
    SwitchingEndpoint,
    /// The app called `close()`.
    Closed,
}

/// What the app hears about.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// CONNACK accepted on endpoint `endpoint` (index into the config list).
    Connected {
        /// Index into [`ClientConfig::endpoints`].
        endpoint: usize,
        /// That endpoint's URL.
        url: String,
        /// The broker kept our session (subscriptions, QoS 1/2 state); only
        /// possible with `clean_session = false`.
        session_present: bool,
    },
    /// A connect attempt failed; the next endpoint or a backoff follows.
    ConnectFailed {
        /// Index into [`ClientConfig::endpoints`] of the endpoint tried.
        endpoint: usize,
        /// That endpoint's URL.
        url: String,
        /// Why the attempt failed.
        reason: DisconnectReason,
    },
    /// An established connection ended; reconnecting follows unless `Closed`.
    Disconnected {
        /// Why the connection ended.
        reason: DisconnectReason,
    },
    /// An application message. QoS 1 may repeat (dedupe by message id);
    /// QoS 2 is delivered once per broker session.
    Message {
        /// The topic name it was published to.
        topic: String,
        /// The application bytes.
        payload: Vec<u8>,
        /// The QoS the broker delivered it with (at most the granted QoS).
        qos: QoS,
        /// RETAIN flag: a retained message, sent because of a new
        /// subscription (§3.3.1.3).
        retain: bool,
        /// DUP flag: the broker may have sent this QoS 1/2 PUBLISH before.
        dup: bool,
    },
    /// The publish is done: QoS 0 handed to the socket, QoS 1 PUBACKed,
    /// QoS 2 PUBCOMPed.
    PublishDone {
        /// The id [`Client::publish`] returned.
        id: PublishId,
    },
    /// Only after `close()`: this publish will never complete.
    PublishFailed {
        /// The id [`Client::publish`] returned.
        id: PublishId,
        /// Why it will never complete.
        error: PublishError,
    },
    /// The broker answered a subscription (again after each reconnect
    /// without session). `None` = refused (SUBACK 0x80); it is then
    /// forgotten, call `subscribe` again to retry.
    Subscribed {
        /// The topic filter, as given to `subscribe`.
        filter: String,
        /// The maximum QoS the broker granted for it.
        granted: Option<QoS>,
    },
    /// The broker acknowledged an unsubscribe (UNSUBACK); the filter is no
    /// longer among the subscriptions.
    Unsubscribed {
        /// The topic filter, as given to `unsubscribe`.
        filter: String,
    },
}

/// A snapshot for `getDetailedStats()` and the hub score.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientStats {
    /// The broker accepted our CONNECT and the connection is still up.
    pub connected: bool,
    /// Endpoint index and URL in use (while connected).
    pub endpoint: Option<usize>,
    /// URL of `endpoint` (while connected).
    pub url: Option<String>,
    /// Round-trip times and missed deadlines, from the session.
    pub rtt: RttStats,
    /// CONNACKs received, and of those all but the first.
    pub connects: u64,
    /// `connects` minus the first.
    pub reconnects: u64,
    /// Connect attempts that ended before an accepted CONNACK (timeout,
    /// refusal, socket closed, protocol error).
    pub connect_failures: u64,
    /// Failed rounds in a row (the backoff exponent).
    pub backoff_failures: u32,
    /// Bytes received on the main connection, over all connections
    /// (probes not counted).
    pub bytes_in: u64,
    /// Bytes produced for the main connection, over all connections
    /// (probes not counted).
    pub bytes_out: u64,
    /// MQTT packets decoded from the broker, over all connections.
    pub packets_in: u64,
    /// MQTT packets encoded for the broker, over all connections.
    pub packets_out: u64,
    /// PUBLISH (DUP) / PUBREL packets resent after reconnects.
    pub resent: u64,
    /// QoS 1/2 publishes sent and awaiting their acks.
    pub inflight: usize,
    /// Publishes waiting to be sent (not counting in-flight ones).
    pub queued: usize,
    /// Topic filters the broker has granted.
    pub subscriptions: usize,
    /// Probes of the preferred endpoint answered by a CONNACK that was
    /// accepted or identifier-rejected (either way: switch back).
    pub probes_ok: u64,
    /// Probes that timed out, lost their socket or got any other answer.
    pub probes_failed: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// OpenSocket emitted, waiting for the `open` event.
    Opening,
    /// CONNECT sent, waiting for CONNACK.
    Handshake,
    /// CONNACK accepted.
    Up,
}

#[derive(Debug)]
struct Conn {
    id: SocketId,
    endpoint: usize,
    phase: Phase,
    deadline: Deadline,
}

/// A probe of the preferred endpoint: WebSocket + CONNECT (empty client id,
/// clean session, no Will, our credentials) until CONNACK, then DISCONNECT.
#[derive(Debug)]
struct Probe {
    id: SocketId,
    deadline: Deadline,
    decoder: Decoder,
}

/// The MQTT client core. See the module docs for the run loop.
#[derive(Debug)]
pub struct Client {
    session: Session,
    endpoints: Endpoints,
    rng: Rng,
    next_socket: u64,
    conn: Option<Conn>,
    probe: Option<Probe>,
    outputs: VecDeque<Output>,
    closed: bool,
    connects: u64,
    connect_failures: u64,
    probes_ok: u64,
    probes_failed: u64,
    /// The latest `now` any call was given (see [`Client::handle_data_lazy`]).
    latest: u64,
}

impl Client {
    /// Validates the config; the first `OpenSocket` (preferred endpoint) is
    /// ready to poll at once.
    pub fn new(config: ClientConfig, rng: Rng, now: u64) -> Result<Self, ConfigError> {
        let session = Session::new(config.session)?;
        let endpoints = Endpoints::new(config.endpoints, config.backoff, now)?;
        let mut client = Client {
            session,
            endpoints,
            rng,
            next_socket: 1,
            conn: None,
            probe: None,
            outputs: VecDeque::new(),
            closed: false,
            connects: 0,
            connect_failures: 0,
            probes_ok: 0,
            probes_failed: 0,
            latest: now,
        };
        client.drive(now);
        Ok(client)
    }

    /// Feeds one browser event. Then drain [`Client::poll_output`].
    pub fn handle_input(&mut self, input: Input, now: u64) {
        self.latest = self.latest.max(now);
        match input {
            Input::SocketOpened(id) => self.on_opened(id, now),
            Input::SocketData(id, data) => self.on_data(id, data, now),
            Input::SocketClosed(id) => self.on_closed(id, now),
            Input::Wake => {
                if !self.closed {
                    self.endpoints.wake(now);
                    if self.phase() == Some(Phase::Up) {
                        self.session.ping_now(now);
                    }
                }
            }
            Input::Timeout => {}
        }
        self.pump(now);
        self.drive(now);
    }

    /// The next thing to do; call until `Timeout`/`Idle`. Timers due at
    /// `now` are fired here too, so a late timer costs nothing.
    pub fn poll_output(&mut self, now: u64) -> Output {
        self.latest = self.latest.max(now);
        let mut drove = false;
        loop {
            if let Some(o) = self.outputs.pop_front() {
                return o;
            }
            match &self.conn {
                Some(c) if c.phase != Phase::Opening => {
                    if let Some(bytes) = self.session.poll_transmit() {
                        return Output::Send { id: c.id, bytes };
                    }
                }
                // Bytes without a socket belong to a dead transport.
                _ => drop(self.session.poll_transmit()),
            }
            match self.poll_timeout() {
                Some(t) if t <= now && !drove => {
                    drove = true;
                    self.drive(now);
                }
                Some(t) => return Output::Timeout(t),
                None => return Output::Idle,
            }
        }
    }

    /// The bytes waiting for the connection's socket, ahead of
    /// [`Client::poll_output`], once there are at least `limit` of them
    /// (use [`COALESCE_LIMIT`]); `None` below that or while the connection
    /// is not up to sending. Queued outputs do not hold these bytes back:
    /// none of them is for this socket (the connection's bytes only ever
    /// leave through here and `poll_output`'s session transmit; the queued
    /// `Send`/`CloseSocket`s are for probes and for connections already
    /// ended), and events may follow the bytes they report. A shell calls
    /// this after each app call of a burst and sends what it gets at once,
    /// as one frame; the rest still leaves at the next drain. Taking bytes
    /// early changes nothing else: a failed send is reported as
    /// [`Input::SocketClosed`] like any other.
    pub fn poll_transmit_over(&mut self, limit: usize) -> Option<(SocketId, Vec<u8>)> {
        let c = self.conn.as_ref().filter(|c| c.phase != Phase::Opening)?;
        if self.session.tx_buffered() < limit.max(1) {
            return None;
        }
        Some((c.id, self.session.poll_transmit()?))
    }

    /// [`Input::SocketData`] with the clock read only when the bytes need
    /// it: `clock` is called at most once, and the time used is returned
    /// (drain [`Client::poll_output`] at it). Reading the clock is not free
    /// in a browser (`performance.now()`, ~0.4 µs in Chromium, more than
    /// decoding a packet) and a subscriber gets one frame per message.
    ///
    /// Frames of whole QoS 0 PUBLISH packets that arrive while the
    /// connection is up, with no PINGREQ out and nothing half-read (see
    /// [`Session::quiet_data`]) are fed at the latest time this client was
    /// given instead. That time is used for nothing an exact one would do
    /// differently: such packets only produce messages and move the
    /// receive time of the keepalive rule, and the keepalive PINGREQ falls
    /// due at the earlier of the last send and the last receive, where the
    /// last send is never later than that latest time; no timer can fall due
    /// at a time already driven. A PINGRESP, PUBACK, PUBREC (RTT samples),
    /// CONNACK, any packet while a ping is out (it moves the ping deadline)
    /// and configs with `recv_silence_ms` (the receive time alone counts
    /// there) read the clock, and so does whatever follows a protocol error
    /// in such a frame (the reconnect backoff starts from the real time).
    pub fn handle_data_lazy(&mut self, id: SocketId, data: Vec<u8>, clock: impl FnOnce() -> u64) -> u64 {
        let quiet = self.conn.as_ref().is_some_and(|c| c.id == id && c.phase == Phase::Up) && self.session.quiet_data(&data);
        if !quiet {
            let now = clock();
            self.handle_input(Input::SocketData(id, data), now);
            return now;
        }
        let at = self.latest;
        self.session.handle_data(data, at);
        let now = if self.session.state() == SessionState::Connected { at } else { clock() };
        self.latest = self.latest.max(now);
        self.pump(now);
        self.drive(now);
        now
    }

    /// Publishes (queued while disconnected, sent after CONNACK; QoS 0 too,
    /// within the same `max_queued` bound). Resolve the app's promise on
    /// `PublishDone`/`PublishFailed` with the returned id.
    pub fn publish(&mut self, topic: &str, payload: &[u8], qos: QoS, retain: bool, now: u64) -> Result<PublishId, UsageError> {
        self.publish_owned(topic, payload.to_vec(), qos, retain, now)
    }

    /// [`Client::publish`] with a payload the caller already owns (no copy).
    pub fn publish_owned(
        &mut self,
        topic: &str,
        payload: Vec<u8>,
        qos: QoS,
        retain: bool,
        now: u64,
    ) -> Result<PublishId, UsageError> {
        self.latest = self.latest.max(now);
        let id = self.session.publish(topic, payload, qos, retain, now)?;
        self.pump(now);
        Ok(id)
    }

    /// Subscribes; kept and re-sent after every reconnect whose CONNACK
    /// says the broker has no session for us.
    pub fn subscribe(&mut self, filter: &str, qos: QoS, now: u64) -> Result<(), UsageError> {
        self.latest = self.latest.max(now);
        self.session.subscribe(&[(filter, qos)], now)?;
        self.pump(now);
        Ok(())
    }

    /// Unsubscribes (sent now, or after the next CONNACK); the filter leaves
    /// the subscriptions on UNSUBACK, reported as [`Event::Unsubscribed`].
    pub fn unsubscribe(&mut self, filter: &str, now: u64) -> Result<(), UsageError> {
        self.latest = self.latest.max(now);
        self.session.unsubscribe(&[filter], now)?;
        self.pump(now);
        Ok(())
    }

    /// DISCONNECT (so the broker drops the Will), close the sockets, fail
    /// every unfinished publish with `PublishFailed`, and never reconnect.
    pub fn close(&mut self, now: u64) {
        self.latest = self.latest.max(now);
        if self.closed {
            return;
        }
        self.closed = true;
        self.endpoints.stop();
        let conn = self.conn.take();
        self.session.close(now);
        let bytes = self.session.poll_transmit();
        if let Some(c) = conn {
            if c.phase != Phase::Opening {
                if let Some(bytes) = bytes {
                    self.outputs.push_back(Output::Send { id: c.id, bytes });
                }
            }
            self.outputs.push_back(Output::CloseSocket { id: c.id });
            if c.phase == Phase::Up {
                self.outputs.push_back(Output::Event(Event::Disconnected { reason: DisconnectReason::Closed }));
            }
        }
        if let Some(p) = self.probe.take() {
            self.outputs.push_back(Output::CloseSocket { id: p.id });
        }
        self.pump(now);
    }

    /// A snapshot of the connection state and the counters.
    pub fn stats(&self) -> ClientStats {
        let up = self.phase() == Some(Phase::Up);
        let endpoint = self.conn.as_ref().filter(|_| up).map(|c| c.endpoint);
        let c = self.session.counters();
        ClientStats {
            connected: up,
            endpoint,
            url: endpoint.and_then(|i| self.endpoints.get(i)).map(|e| e.url.clone()),
            rtt: self.session.rtt(),
            connects: self.connects,
            reconnects: self.connects.saturating_sub(1),
            connect_failures: self.connect_failures,
            backoff_failures: self.endpoints.failures(),
            bytes_in: c.bytes_in,
            bytes_out: c.bytes_out,
            packets_in: c.packets_in,
            packets_out: c.packets_out,
            resent: c.resent,
            inflight: self.session.inflight_len(),
            queued: self.session.queued_len(),
            subscriptions: self.session.subscriptions().count(),
            probes_ok: self.probes_ok,
            probes_failed: self.probes_failed,
        }
    }

    /// The session inside, for getters.
    pub fn session(&self) -> &Session {
        &self.session
    }

    /// The next instant something is due (`None` = nothing scheduled).
    pub fn poll_timeout(&self) -> Option<u64> {
        if self.closed {
            return None;
        }
        let opening = self.conn.as_ref().filter(|c| c.phase == Phase::Opening).map(|c| c.deadline.at);
        let probe = self.probe.as_ref().map(|p| p.deadline.at);
        let session = self.session.poll_timeout();
        let ep = self.endpoints.poll_timeout();
        [opening, probe, session, ep].into_iter().flatten().min()
    }

    // ------------------------------------------------------------ internals

    fn phase(&self) -> Option<Phase> {
        self.conn.as_ref().map(|c| c.phase)
    }

    fn new_socket(&mut self) -> SocketId {
        let id = SocketId(self.next_socket);
        self.next_socket += 1;
        id
    }

    fn url(&self, endpoint: usize) -> String {
        self.endpoints.get(endpoint).map(|e| e.url.clone()).unwrap_or_default()
    }

    fn timeout_of(&self, endpoint: usize) -> u64 {
        self.endpoints.get(endpoint).map_or(2_000, |e| e.connect_timeout_ms)
    }

    /// Fires due timers and starts attempts and probes that are due.
    fn drive(&mut self, now: u64) {
        if self.closed {
            return;
        }
        if let Some(c) = &mut self.conn {
            if c.phase == Phase::Opening && c.deadline.expired(now) {
                self.end_conn(now, DisconnectReason::ConnectTimeout, true);
            }
        }
        self.session.handle_timeout(now);
        self.pump(now);
        if let Some(p) = &mut self.probe {
            if p.deadline.expired(now) {
                self.probe_failed(now);
            }
        }
        if self.conn.is_none() {
            if let Some(endpoint) = self.endpoints.poll_connect(now) {
                let id = self.new_socket();
                let deadline = Deadline::new(now.saturating_add(self.timeout_of(endpoint)));
                self.conn = Some(Conn { id, endpoint, phase: Phase::Opening, deadline });
                self.outputs.push_back(Output::OpenSocket { id, url: self.url(endpoint) });
            }
        }
        if self.phase() == Some(Phase::Up) && self.probe.is_none() {
            if let Some(endpoint) = self.endpoints.poll_probe(now) {
                let id = self.new_socket();
                let deadline = Deadline::new(now.saturating_add(self.timeout_of(endpoint)));
                let max = self.session.config().max_packet_size;
                self.probe = Some(Probe { id, deadline, decoder: Decoder::new(max) });
                self.outputs.push_back(Output::OpenSocket { id, url: self.url(endpoint) });
            }
        }
    }

    fn on_opened(&mut self, id: SocketId, now: u64) {
        if let Some(c) = self.conn.as_mut().filter(|c| c.id == id && c.phase == Phase::Opening) {
            c.phase = Phase::Handshake;
            let deadline = c.deadline.at;
            self.session.connect(now, Some(deadline));
        } else if self.probe.as_ref().is_some_and(|p| p.id == id) {
            let cfg = self.session.config();
            let connect = Packet::Connect(Connect {
                clean_session: true,
                keep_alive: 10,
                client_id: String::new(),
                will: None,
                username: cfg.username.clone(),
                password: cfg.password.clone(),
            });
            let mut bytes = Vec::new();
            if codec::encode(&connect, &mut bytes).is_ok() {
                self.outputs.push_back(Output::Send { id, bytes });
            }
        }
    }

    fn on_data(&mut self, id: SocketId, data: Vec<u8>, now: u64) {
        if self.conn.as_ref().is_some_and(|c| c.id == id && c.phase != Phase::Opening) {
            self.session.handle_data(data, now);
            return;
        }
        let Some(p) = self.probe.as_mut().filter(|p| p.id == id) else {
            return; // a stale socket: ignore
        };
        p.decoder.feed_owned(data);
        match p.decoder.next_from_broker() {
            Ok(None) => {}
            // Identifier rejected = the broker is up and speaks MQTT but
            // does not allow empty client ids: good enough to switch.
            Ok(Some(Packet::ConnAck(ack)))
                if matches!(ack.code, ConnectReturnCode::Accepted | ConnectReturnCode::IdentifierRejected) =>
            {
                self.probe_succeeded(now)
            }
            _ => self.probe_failed(now),
        }
    }

    fn on_closed(&mut self, id: SocketId, now: u64) {
        if self.conn.as_ref().is_some_and(|c| c.id == id) {
            self.end_conn(now, DisconnectReason::SocketClosed, false);
        } else if self.probe.as_ref().is_some_and(|p| p.id == id) {
            self.probe = None;
            self.probes_failed += 1;
            self.endpoints.on_probe_result(false, now);
        }
    }

    fn probe_failed(&mut self, now: u64) {
        if let Some(p) = self.probe.take() {
            self.outputs.push_back(Output::CloseSocket { id: p.id });
            self.probes_failed += 1;
            self.endpoints.on_probe_result(false, now);
        }
    }

    fn probe_succeeded(&mut self, now: u64) {
        let Some(p) = self.probe.take() else { return };
        self.probes_ok += 1;
        let mut bye = Vec::new();
        if codec::encode(&Packet::Disconnect, &mut bye).is_ok() {
            self.outputs.push_back(Output::Send { id: p.id, bytes: bye });
        }
        self.outputs.push_back(Output::CloseSocket { id: p.id });
        self.endpoints.on_probe_result(true, now);
        let Some(c) = self.conn.take() else { return };
        // Break before make: DISCONNECT (no Will), then reconnect to the
        // preferred endpoint. Unacked publishes stay in the session and are
        // resent there.
        self.session.disconnect(now);
        if let Some(bytes) = self.session.poll_transmit() {
            self.outputs.push_back(Output::Send { id: c.id, bytes });
        }
        self.session.transport_closed();
        self.outputs.push_back(Output::CloseSocket { id: c.id });
        self.outputs
            .push_back(Output::Event(Event::Disconnected { reason: DisconnectReason::SwitchingEndpoint }));
        self.endpoints.switch_to_preferred(now);
    }

    /// Ends the main connection or attempt: an established one counts as a
    /// disconnect, an attempt as a failure (next endpoint or backoff).
    fn end_conn(&mut self, now: u64, reason: DisconnectReason, close_socket: bool) {
        let Some(c) = self.conn.take() else { return };
        self.session.transport_closed();
        if close_socket {
            self.outputs.push_back(Output::CloseSocket { id: c.id });
        }
        if c.phase == Phase::Up {
            if let Some(p) = self.probe.take() {
                self.outputs.push_back(Output::CloseSocket { id: p.id });
            }
            self.endpoints.on_disconnected(now, &mut self.rng);
            self.outputs.push_back(Output::Event(Event::Disconnected { reason }));
        } else {
            self.connect_failures += 1;
            self.endpoints.on_failed(now, &mut self.rng);
            let url = self.url(c.endpoint);
            self.outputs.push_back(Output::Event(Event::ConnectFailed { endpoint: c.endpoint, url, reason }));
        }
    }

    /// Turns session events into outputs and state changes.
    fn pump(&mut self, now: u64) {
        while let Some(ev) = self.session.poll_event() {
            let event = match ev {
                SessionEvent::Connected { session_present } => {
                    let Some(c) = self.conn.as_mut() else { continue };
                    c.phase = Phase::Up;
                    let endpoint = c.endpoint;
                    self.connects += 1;
                    self.endpoints.on_connected(now);
                    Event::Connected { endpoint, url: self.url(endpoint), session_present }
                }
                SessionEvent::ConnectionRefused { code } => {
                    self.end_conn(now, DisconnectReason::Refused(code), true);
                    continue;
                }
                SessionEvent::ConnectionLost { reason } => {
                    let reason = match reason {
                        LostReason::KeepaliveTimeout => DisconnectReason::KeepaliveTimeout,
                        LostReason::ConnectTimeout => DisconnectReason::ConnectTimeout,
                        LostReason::Protocol(e) => DisconnectReason::Protocol(e),
                    };
                    self.end_conn(now, reason, true);
                    continue;
                }
                SessionEvent::Message(p) => Event::Message {
                    topic: p.topic,
                    payload: p.payload,
                    qos: p.qos,
                    retain: p.retain,
                    dup: p.dup,
                },
                SessionEvent::PublishDone { id } => Event::PublishDone { id },
                SessionEvent::PublishFailed { id, error } => Event::PublishFailed { id, error },
                SessionEvent::Subscribed { results, .. } => {
                    for (filter, granted) in results {
                        self.outputs.push_back(Output::Event(Event::Subscribed { filter, granted }));
                    }
                    continue;
                }
                SessionEvent::Unsubscribed { filters, .. } => {
                    for filter in filters {
                        self.outputs.push_back(Output::Event(Event::Unsubscribed { filter }));
                    }
                    continue;
                }
            };
            self.outputs.push_back(Output::Event(event));
        }
    }
}
