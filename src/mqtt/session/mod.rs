//! One MQTT 3.1.1 client session, carried over a sequence of transport
//! connections (quinn-proto style, sans-IO).
//!
//! The methods fall into four kinds:
//! - transport inputs: [`Session::connect`] (a transport just opened),
//!   [`Session::handle_data`], [`Session::transport_closed`],
//!   [`Session::handle_timeout`] (calling it early or twice is harmless);
//! - application mutators: [`Session::publish`], [`Session::subscribe`],
//!   [`Session::unsubscribe`], [`Session::ping_now`], [`Session::disconnect`],
//!   [`Session::close`];
//! - outputs, polled in this order after every input or mutation:
//!   [`Session::poll_transmit`] (all bytes since the last poll, coalesced into
//!   one buffer = one WebSocket frame), [`Session::poll_event`],
//!   [`Session::poll_timeout`];
//! - getters ([`Session::rtt`], [`Session::counters`], ...).
//!
//! What survives a transport: the queue, unacknowledged QoS 1/2 messages,
//! the QoS 2 ids received but not yet released, the subscriptions, and
//! pending SUBSCRIBE/UNSUBSCRIBE requests. See `PROTOCOL.md` (Part 1) for
//! the resend rules.

use std::collections::VecDeque;

use super::codec::{self, Decoder};
use super::error::{ConfigError, ProtocolError, PublishError, UsageError};

mod config;
mod inbound;

pub use config::SessionConfig;
use super::packet::*;
use super::timing::{Deadline, RttStats, RTT_MEASURE_GAP_MS, RTT_SEED_SAMPLES, RTT_WARMUP_MS};
use super::topic::{validate_topic_filter, validate_topic_name};

/// The app's handle on one publish, stable across reconnects and packet-id
/// changes (use it to resolve the app's promise).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PublishId(pub u64);

/// At most this many SUBSCRIBE/UNSUBSCRIBE requests may await their ack.
pub const MAX_PENDING_REQUESTS: usize = 256;


/// Why the session dropped its transport on its own.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LostReason {
    /// No PINGRESP (nor any other packet) before the deadline: a zombie socket.
    KeepaliveTimeout,
    /// No CONNACK before the deadline.
    ConnectTimeout,
    /// The broker sent something invalid.
    Protocol(ProtocolError),
}

/// What the session tells its owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionEvent {
    /// CONNACK accepted.
    Connected {
        /// The broker kept our session (subscriptions, QoS 1/2 state).
        session_present: bool,
    },
    /// CONNACK refused; the transport should be closed.
    ConnectionRefused {
        /// The CONNACK's return code (never `Accepted`).
        code: ConnectReturnCode,
    },
    /// The session gave up on this transport; close it and reconnect.
    ConnectionLost {
        /// Why the session gave up.
        reason: LostReason,
    },
    /// An application message arrived (QoS 2: once per packet id).
    Message(Publish),
    /// QoS 0: handed to the transport. QoS 1: PUBACK. QoS 2: PUBCOMP.
    PublishDone {
        /// The id [`Session::publish`] returned.
        id: PublishId,
    },
    /// Only after [`Session::close`]: this publish will not complete.
    PublishFailed {
        /// The id [`Session::publish`] returned.
        id: PublishId,
        /// Why it will not complete.
        error: PublishError,
    },
    /// A SUBACK; `None` = the broker refused that filter (0x80).
    Subscribed {
        /// Packet identifier of the SUBSCRIBE: the one [`Session::subscribe`]
        /// returned, or a new one for a resubscribe after a reconnect.
        packet_id: u16,
        /// Each requested filter with the QoS granted, in request order.
        results: Vec<(String, Option<QoS>)>,
    },
    /// An UNSUBACK.
    Unsubscribed {
        /// Packet identifier of the UNSUBSCRIBE, as [`Session::unsubscribe`] returned it.
        packet_id: u16,
        /// The filters of that UNSUBSCRIBE, now removed from the subscriptions.
        filters: Vec<String>,
    },
}

/// Coarse state, for getters and stats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionState {
    /// No transport (or one that is not ours yet).
    Disconnected,
    /// CONNECT sent, waiting for CONNACK.
    Connecting,
    /// CONNACK accepted.
    Connected,
    /// `close()` was called.
    Closed,
}

/// Counters since the session was created.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SessionCounters {
    /// Bytes fed to [`Session::handle_data`] while connecting or connected.
    pub bytes_in: u64,
    /// Bytes taken out with [`Session::poll_transmit`].
    pub bytes_out: u64,
    /// Whole packets decoded from the broker.
    pub packets_in: u64,
    /// Packets encoded for the broker (including ones dropped with a
    /// transport before they were polled).
    pub packets_out: u64,
    /// QoS 1/2 PUBLISH (DUP) and PUBREL packets resent after a reconnect.
    pub resent: u64,
}

#[derive(Debug)]
enum State {
    Disconnected,
    Connecting { deadline: Option<Deadline> },
    Connected,
    Closed,
}

#[derive(Debug)]
struct Message {
    id: PublishId,
    topic: String,
    payload: Vec<u8>,
    qos: QoS,
    retain: bool,
}

#[derive(Debug, PartialEq, Eq)]
enum Stage {
    /// PUBLISH sent, waiting for PUBACK (QoS 1) or PUBREC (QoS 2).
    Published,
    /// QoS 2: PUBREL sent, waiting for PUBCOMP.
    Released,
}

#[derive(Debug)]
struct Inflight {
    msg: Message,
    packet_id: u16,
    stage: Stage,
    /// First transmission time; `None` once resent (no RTT sample then).
    sent_at: Option<u64>,
}

#[derive(Debug)]
enum RequestKind {
    Sub(Vec<(String, QoS)>),
    Unsub(Vec<String>),
}

#[derive(Debug)]
struct Request {
    packet_id: u16,
    kind: RequestKind,
}

#[derive(Debug)]
struct Ping {
    sent_at: u64,
    deadline: Deadline,
    timeout_ms: u64,
}

/// A set of packet ids: 65,536 bits, allocated on first use. It mirrors the
/// ids of `Session::inflight`, so finding a free id for the next publish does
/// not scan the whole in-flight window (1,000 entries by default) per packet.
#[derive(Debug, Default)]
struct IdSet(Vec<u64>);

impl IdSet {
    fn contains(&self, id: u16) -> bool {
        self.0.get(usize::from(id >> 6)).is_some_and(|w| w & (1 << (id & 63)) != 0)
    }
    fn insert(&mut self, id: u16) {
        if self.0.is_empty() {
            self.0 = vec![0; 1 << 10];
        }
        if let Some(w) = self.0.get_mut(usize::from(id >> 6)) {
            *w |= 1 << (id & 63);
        }
    }
    fn remove(&mut self, id: u16) {
        if let Some(w) = self.0.get_mut(usize::from(id >> 6)) {
            *w &= !(1 << (id & 63));
        }
    }
}

/// The transmit side: one buffer for everything produced since the last poll.
#[derive(Debug, Default)]
struct Tx {
    out: Vec<u8>,
    last_send: u64,
    packets: u64,
}

impl Tx {
    fn packet(&mut self, p: &Packet, now: u64) {
        // Control packets built here always have non-zero ids and fields
        // validated on the way in, so encoding cannot fail; if it ever did,
        // writing nothing is the safe outcome.
        if codec::encode(p, &mut self.out).is_ok() {
            self.packets += 1;
            self.last_send = now;
        }
    }

    fn publish(&mut self, m: &Message, packet_id: u16, dup: bool, now: u64) {
        // Topic and size were validated by `Session::publish`.
        let dup = dup && m.qos != QoS::AtMostOnce;
        if codec::encode_publish(&mut self.out, &m.topic, &m.payload, m.qos, packet_id, dup, m.retain)
            .is_ok()
        {
            self.packets += 1;
            self.last_send = now;
        }
    }
}

/// The MQTT client session state machine. See the module docs.
#[derive(Debug)]
pub struct Session {
    cfg: SessionConfig,
    state: State,
    decoder: Decoder,
    tx: Tx,
    events: VecDeque<SessionEvent>,
    next_publish_id: u64,
    next_packet_id: u16,
    /// Publishes not yet handed to the broker, in publish order.
    queue: VecDeque<Message>,
    /// QoS 1/2 publishes awaiting acks, in the order they were first sent
    /// (packet ids are unique within it). Acks mostly come in that order, so
    /// lookups find theirs at the front; a plain deque is far smaller in wasm
    /// than an ordered map.
    inflight: VecDeque<Inflight>,
    /// The packet ids in `inflight` (change both through `inflight_*`).
    inflight_ids: IdSet,
    /// Incoming QoS 2 ids delivered to the app, awaiting PUBREL (no duplicates).
    incoming_qos2: Vec<u16>,
    /// Filters the broker granted, with the QoS we asked for, sorted by filter
    /// (no duplicates).
    subs: Vec<(String, QoS)>,
    /// SUBSCRIBE/UNSUBSCRIBE awaiting their ack, in request order.
    requests: Vec<Request>,
    ping: Option<Ping>,
    /// When the transport last delivered bytes (or connected). A socket that
    /// still accepts our sends but delivers nothing is dead all the same
    /// (blackholed link, offline emulation, iOS zombie): the keepalive ping
    /// also runs after `keep_alive` of receive silence, whatever we send.
    last_recv: u64,
    rtt: RttStats,
    /// Round trips of packets sent before this are start-up, not link
    /// ([`RTT_WARMUP_MS`] after the last CONNACK).
    rtt_from: u64,
    /// The next measurement PINGREQ after the start-up window, and how
    /// many are left ([`RTT_SEED_SAMPLES`]).
    measure_ping_at: Option<u64>,
    measure_pings_left: u64,
    counters: SessionCounters,
}

impl Session {
    /// A disconnected session; call [`Session::connect`] once a transport is open.
    pub fn new(cfg: SessionConfig) -> Result<Self, ConfigError> {
        cfg.validate()?;
        Ok(Session {
            decoder: Decoder::new(cfg.max_packet_size),
            cfg,
            state: State::Disconnected,
            tx: Tx::default(),
            events: VecDeque::new(),
            next_publish_id: 1,
            next_packet_id: 0,
            queue: VecDeque::new(),
            inflight: VecDeque::new(),
            inflight_ids: IdSet::default(),
            incoming_qos2: Vec::new(),
            subs: Vec::new(),
            requests: Vec::new(),
            ping: None,
            last_recv: 0,
            rtt: RttStats::default(),
            rtt_from: 0,
            measure_ping_at: None,
            measure_pings_left: 0,
            counters: SessionCounters::default(),
        })
    }

    // ------------------------------------------------------------ getters

    /// The configuration the session was created with.
    pub fn config(&self) -> &SessionConfig {
        &self.cfg
    }

    /// Where the session is with its current transport.
    pub fn state(&self) -> SessionState {
        match self.state {
            State::Disconnected => SessionState::Disconnected,
            State::Connecting { .. } => SessionState::Connecting,
            State::Connected => SessionState::Connected,
            State::Closed => SessionState::Closed,
        }
    }

    /// Round-trip times and missed deadlines so far.
    pub fn rtt(&self) -> RttStats {
        self.rtt
    }

    /// Traffic counters since the session was created.
    pub fn counters(&self) -> SessionCounters {
        let mut c = self.counters;
        c.packets_out = self.tx.packets;
        c
    }

    /// QoS 1/2 publishes awaiting their acks.
    pub fn inflight_len(&self) -> usize {
        self.inflight.len()
    }

    /// Bytes received on this transport that do not yet form a whole
    /// packet (0 = the next byte in starts a packet).
    pub fn rx_buffered(&self) -> usize {
        self.decoder.buffered()
    }

    /// Bytes written for the transport and not yet taken by
    /// [`Session::poll_transmit`].
    pub fn tx_buffered(&self) -> usize {
        self.tx.out.len()
    }

    /// True when feeding `data` next would use `now` only for the receive
    /// time of the keepalive rule: connected, no PINGREQ awaiting its answer
    /// (any packet moves its deadline, and its PINGRESP is an RTT sample),
    /// no `recv_silence_ms`, nothing of a packet buffered, and `data` whole
    /// QoS 0 PUBLISH packets (no DUP) within `max_packet_size`. Such packets
    /// only produce messages. See [`crate::mqtt::Client::handle_data_lazy`].
    pub fn quiet_data(&self, data: &[u8]) -> bool {
        if !matches!(self.state, State::Connected)
            || self.ping.is_some()
            || self.cfg.recv_silence_ms.is_some()
            || self.decoder.buffered() != 0
        {
            return false;
        }
        let mut at = 0;
        while at < data.len() {
            let rest = &data[at..];
            // Type 3, DUP 0, QoS 0; RETAIN either way.
            if rest[0] & 0xFE != 0x30 {
                return false;
            }
            match codec::fixed_header(rest) {
                Ok(Some((header, remaining))) if header + remaining <= self.cfg.max_packet_size => at += header + remaining,
                _ => return false,
            }
        }
        at == data.len()
    }

    /// Publishes waiting to be sent.
    pub fn queued_len(&self) -> usize {
        self.queue.len()
    }

    /// Filters currently granted by the broker.
    pub fn subscriptions(&self) -> impl Iterator<Item = (&str, QoS)> {
        self.subs.iter().map(|(f, q)| (f.as_str(), *q))
    }

    #[cfg(test)]
    pub(crate) fn set_next_packet_id(&mut self, id: u16) {
        self.next_packet_id = id;
    }

    // ------------------------------------------------------------ transport inputs

    /// A new transport is open: sends CONNECT. `connack_deadline` is the
    /// instant by which CONNACK must have arrived.
    pub fn connect(&mut self, now: u64, connack_deadline: Option<u64>) {
        if matches!(self.state, State::Closed) {
            return;
        }
        self.reset_transport();
        self.last_recv = now;
        self.state = State::Connecting { deadline: connack_deadline.map(Deadline::new) };
        let connect = Packet::Connect(self.cfg.connect_packet());
        self.tx.packet(&connect, now);
    }

    /// The transport is gone (closed by the peer, or by the owner). No event:
    /// the owner knows. State that must survive is kept.
    pub fn transport_closed(&mut self) {
        if matches!(self.state, State::Connecting { .. } | State::Connected) {
            self.reset_transport();
            self.state = State::Disconnected;
        }
    }

    /// Bytes from the transport, in order. Any chunking is fine.
    pub fn handle_data(&mut self, data: Vec<u8>, now: u64) {
        if !matches!(self.state, State::Connecting { .. } | State::Connected) {
            return;
        }
        self.counters.bytes_in += data.len() as u64;
        self.last_recv = now;
        self.decoder.feed_owned(data);
        loop {
            match self.decoder.next_from_broker() {
                Ok(Some(p)) => {
                    self.counters.packets_in += 1;
                    if let Err(e) = self.handle_packet(p, now) {
                        self.lose(LostReason::Protocol(e));
                        return;
                    }
                    if !matches!(self.state, State::Connecting { .. } | State::Connected) {
                        return;
                    }
                }
                Ok(None) => return,
                Err(e) => {
                    self.lose(LostReason::Protocol(ProtocolError::Decode(e)));
                    return;
                }
            }
        }
    }

    /// Fires due timers: CONNACK deadline, PINGRESP deadline, keepalive PINGREQ.
    pub fn handle_timeout(&mut self, now: u64) {
        if let State::Connecting { deadline: Some(d) } = &mut self.state {
            if d.expired(now) {
                self.rtt.timeouts += 1;
                self.lose(LostReason::ConnectTimeout);
            }
            return;
        }
        if !matches!(self.state, State::Connected) {
            return;
        }
        if let Some(p) = &mut self.ping {
            if p.deadline.expired(now) {
                self.rtt.timeouts += 1;
                self.lose(LostReason::KeepaliveTimeout);
                return;
            }
        }
        if self.ping.is_none() && self.keepalive_due().is_some_and(|due| now >= due) {
            self.send_ping(now, self.cfg.ping_timeout_ms);
        }
        // A ping already out (keepalive, wake) is answered first: then this one.
        if self.ping.is_none() && self.measure_ping_at.is_some_and(|at| now >= at) {
            self.measure_pings_left = self.measure_pings_left.saturating_sub(1);
            self.measure_ping_at = (self.measure_pings_left > 0).then(|| now.saturating_add(RTT_MEASURE_GAP_MS));
            self.send_ping(now, self.cfg.ping_timeout_ms);
        }
    }

    // ------------------------------------------------------------ app mutators

    /// Queues a publish; it is sent at once when connected and the in-flight
    /// window allows, else after the next CONNACK. Never silently dropped:
    /// it ends in `PublishDone`, or `PublishFailed` after `close()`.
    pub fn publish(
        &mut self,
        topic: &str,
        payload: Vec<u8>,
        qos: QoS,
        retain: bool,
        now: u64,
    ) -> Result<PublishId, UsageError> {
        if matches!(self.state, State::Closed) {
            return Err(UsageError::Closed);
        }
        validate_topic_name(topic).map_err(UsageError::InvalidTopic)?;
        let size = codec::publish_len(topic, payload.len(), qos);
        if size > self.cfg.max_packet_size {
            return Err(UsageError::PacketTooLarge { size, max: self.cfg.max_packet_size });
        }
        if self.queue.len() >= self.cfg.max_queued {
            return Err(UsageError::QueueFull { limit: self.cfg.max_queued });
        }
        let id = PublishId(self.next_publish_id);
        self.next_publish_id += 1;
        self.queue.push_back(Message { id, topic: topic.to_owned(), payload, qos, retain });
        self.flush_queue(now);
        Ok(id)
    }

    /// Subscribes to filters; returns the packet id of the SUBSCRIBE. Kept
    /// across reconnects: re-sent when the broker has no session for us.
    pub fn subscribe(&mut self, filters: &[(&str, QoS)], now: u64) -> Result<u16, UsageError> {
        for (f, _) in filters {
            validate_topic_filter(f).map_err(UsageError::InvalidFilter)?;
        }
        let list: Vec<(String, QoS)> = filters.iter().map(|(f, q)| ((*f).to_owned(), *q)).collect();
        let size = 5 + list.iter().map(|(f, _)| 3 + f.len()).sum::<usize>();
        self.request(RequestKind::Sub(list), size, now)
    }

    /// Unsubscribes; returns the packet id of the UNSUBSCRIBE.
    pub fn unsubscribe(&mut self, filters: &[&str], now: u64) -> Result<u16, UsageError> {
        for f in filters {
            validate_topic_filter(f).map_err(UsageError::InvalidFilter)?;
        }
        let list: Vec<String> = filters.iter().map(|f| (*f).to_owned()).collect();
        let size = 5 + list.iter().map(|f| 2 + f.len()).sum::<usize>();
        self.request(RequestKind::Unsub(list), size, now)
    }

    /// Checks liveness now: sends PINGREQ (unless one is out) and expects an
    /// answer within `wake_ping_timeout_ms`. Call it when the page becomes
    /// visible or the network comes back: iOS leaves sockets that look OPEN
    /// but are dead, and only a reply proves otherwise.
    pub fn ping_now(&mut self, now: u64) {
        if !matches!(self.state, State::Connected) {
            return;
        }
        let timeout = self.cfg.wake_ping_timeout_ms;
        match &mut self.ping {
            Some(p) => {
                if now.saturating_add(timeout) < p.deadline.at {
                    p.deadline = Deadline::new(now.saturating_add(timeout));
                    p.timeout_ms = timeout;
                }
            }
            None => self.send_ping(now, timeout),
        }
    }

    /// Sends DISCONNECT (the broker then discards the Will) and leaves the
    /// transport; poll the transmit once more, then close the socket. State
    /// that survives transports is kept for the next `connect`.
    pub fn disconnect(&mut self, now: u64) {
        if matches!(self.state, State::Connecting { .. } | State::Connected) {
            self.tx.packet(&Packet::Disconnect, now);
            self.decoder.reset();
            self.ping = None;
            self.state = State::Disconnected;
        }
    }

    /// Disconnects for good: every unfinished publish ends in
    /// `PublishFailed { error: Closed }`, in publish order.
    pub fn close(&mut self, now: u64) {
        if matches!(self.state, State::Closed) {
            return;
        }
        self.disconnect(now);
        self.state = State::Closed;
        // `inflight` is already in publish order.
        let unfinished = self.inflight_take_all();
        let ids = unfinished.into_iter().map(|f| f.msg.id).chain(self.queue.drain(..).map(|m| m.id));
        for id in ids {
            self.events.push_back(SessionEvent::PublishFailed { id, error: PublishError::Closed });
        }
        self.requests.clear();
        self.subs.clear();
    }

    // ------------------------------------------------------------ outputs

    /// Every byte produced since the last call, as one buffer (send it as one
    /// WebSocket frame). `None` when there is nothing to send.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        if self.tx.out.is_empty() {
            return None;
        }
        let out = std::mem::take(&mut self.tx.out);
        self.counters.bytes_out += out.len() as u64;
        Some(out)
    }

    /// The next event for the owner, in order; `None` when there is none.
    pub fn poll_event(&mut self) -> Option<SessionEvent> {
        self.events.pop_front()
    }

    /// The next instant [`Session::handle_timeout`] has work to do.
    pub fn poll_timeout(&self) -> Option<u64> {
        match &self.state {
            State::Connecting { deadline } => deadline.map(|d| d.at),
            // While a ping is out only its deadline matters (any packet
            // clears it, see `inbound`); otherwise the next keepalive.
            State::Connected => match &self.ping {
                Some(p) => Some(p.deadline.at),
                None => match (self.keepalive_due(), self.measure_ping_at) {
                    (Some(k), Some(m)) => Some(k.min(m)),
                    (k, m) => k.or(m),
                },
            },
            _ => None,
        }
    }

    // ------------------------------------------------------------ internals

    /// The keepalive PINGREQ is due after `keep_alive` with nothing sent
    /// (MQTT's rule, so the broker keeps us) *or* nothing received (so we
    /// notice a link that swallows everything while we keep sending
    /// heartbeats). A dead link is then lost within keep_alive + ping timeout.
    /// `recv_silence_ms`, when set, shortens the receive half of the rule.
    fn keepalive_due(&self) -> Option<u64> {
        let keepalive = match self.cfg.keep_alive_secs {
            0 => None,
            s => Some(self.tx.last_send.min(self.last_recv).saturating_add(u64::from(s) * 1000)),
        };
        let silence = self.cfg.recv_silence_ms.map(|ms| self.last_recv.saturating_add(ms));
        match (keepalive, silence) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn send_ping(&mut self, now: u64, timeout_ms: u64) {
        self.tx.packet(&Packet::PingReq, now);
        if self.ping.is_none() {
            self.ping = Some(Ping { sent_at: now, deadline: Deadline::new(now.saturating_add(timeout_ms)), timeout_ms });
        }
    }

    fn reset_transport(&mut self) {
        self.tx.out.clear();
        self.decoder.reset();
        self.ping = None;
        self.measure_ping_at = None;
    }

    fn lose(&mut self, reason: LostReason) {
        self.reset_transport();
        self.state = State::Disconnected;
        self.events.push_back(SessionEvent::ConnectionLost { reason });
    }

    /// Where the in-flight publish with this packet id is.
    fn inflight_pos(&self, id: u16) -> Option<usize> {
        if !self.inflight_ids.contains(id) {
            return None;
        }
        self.inflight.iter().position(|f| f.packet_id == id)
    }

    fn inflight_push(&mut self, f: Inflight) {
        self.inflight_ids.insert(f.packet_id);
        self.inflight.push_back(f);
    }

    fn inflight_remove(&mut self, i: usize) -> Option<Inflight> {
        let f = self.inflight.remove(i)?;
        self.inflight_ids.remove(f.packet_id);
        Some(f)
    }

    fn inflight_take_all(&mut self) -> VecDeque<Inflight> {
        self.inflight_ids = IdSet::default();
        std::mem::take(&mut self.inflight)
    }

    /// Where `filter` is (`Ok`) or would go (`Err`) in the sorted `subs`.
    fn sub_pos(&self, filter: &str) -> Result<usize, usize> {
        self.subs.binary_search_by(|(f, _)| f.as_str().cmp(filter))
    }

    /// Records a granted filter (replacing the QoS of one already there).
    fn sub_insert(&mut self, filter: String, qos: QoS) {
        match self.sub_pos(&filter) {
            Ok(i) => self.subs[i].1 = qos,
            Err(i) => self.subs.insert(i, (filter, qos)),
        }
    }

    fn sub_remove(&mut self, filter: &str) {
        if let Ok(i) = self.sub_pos(filter) {
            self.subs.remove(i);
        }
    }

    fn id_in_use(&self, id: u16) -> bool {
        self.inflight_ids.contains(id) || self.requests.iter().any(|r| r.packet_id == id)
    }

    /// The next free packet id (never 0, skipping ids still in use).
    fn alloc_packet_id(&mut self) -> Option<u16> {
        for _ in 0..u16::MAX {
            self.next_packet_id = self.next_packet_id.wrapping_add(1).max(1);
            if !self.id_in_use(self.next_packet_id) {
                return Some(self.next_packet_id);
            }
        }
        None
    }

    fn request(&mut self, kind: RequestKind, size: usize, now: u64) -> Result<u16, UsageError> {
        if matches!(self.state, State::Closed) {
            return Err(UsageError::Closed);
        }
        let empty = match &kind {
            RequestKind::Sub(l) => l.is_empty(),
            RequestKind::Unsub(l) => l.is_empty(),
        };
        if empty {
            return Err(UsageError::NoFilters);
        }
        if size > self.cfg.max_packet_size {
            return Err(UsageError::PacketTooLarge { size, max: self.cfg.max_packet_size });
        }
        if self.requests.len() >= MAX_PENDING_REQUESTS {
            return Err(UsageError::TooManyPendingRequests { limit: MAX_PENDING_REQUESTS });
        }
        let packet_id = self
            .alloc_packet_id()
            .ok_or(UsageError::TooManyPendingRequests { limit: MAX_PENDING_REQUESTS })?;
        self.requests.push(Request { packet_id, kind });
        if matches!(self.state, State::Connected) {
            if let Some(r) = self.requests.last() {
                send_request(&mut self.tx, r, now);
            }
        }
        Ok(packet_id)
    }

    /// Hands queued publishes to the broker, in order, while the window allows.
    fn flush_queue(&mut self, now: u64) {
        if !matches!(self.state, State::Connected) {
            return;
        }
        while let Some(front) = self.queue.front() {
            if front.qos == QoS::AtMostOnce {
                let Some(m) = self.queue.pop_front() else { break };
                self.tx.publish(&m, 0, false, now);
                self.events.push_back(SessionEvent::PublishDone { id: m.id });
                continue;
            }
            if self.inflight.len() >= usize::from(self.cfg.max_inflight) {
                break;
            }
            let Some(packet_id) = self.alloc_packet_id() else { break };
            let Some(msg) = self.queue.pop_front() else { break };
            self.tx.publish(&msg, packet_id, false, now);
            // `alloc_packet_id` skips ids in use: the id is new to `inflight`.
            self.inflight_push(Inflight { msg, packet_id, stage: Stage::Published, sent_at: Some(now) });
        }
    }

}

fn send_request(tx: &mut Tx, r: &Request, now: u64) {
    let packet = match &r.kind {
        RequestKind::Sub(filters) => {
            Packet::Subscribe(Subscribe { packet_id: r.packet_id, filters: filters.clone() })
        }
        RequestKind::Unsub(filters) => {
            Packet::Unsubscribe(Unsubscribe { packet_id: r.packet_id, filters: filters.clone() })
        }
    };
    tx.packet(&packet, now);
}
