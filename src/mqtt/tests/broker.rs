//! An in-memory MQTT broker and network for driving [`Client`] with a
//! virtual clock (quinn's `Pair` idea): nothing sleeps, `run_until` jumps
//! the clock to the next delivery or client timeout.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::endpoints::{BackoffConfig, EndpointConfig};
use crate::mqtt::codec::{encode, Decoder};
use crate::mqtt::packet::*;
use crate::mqtt::topic::topic_matches;
use crate::mqtt::{Client, ClientConfig, Event, Input, Output, SessionConfig, SocketId, COALESCE_LIMIT};
use crate::rng::Rng;

pub const LOCAL: &str = "ws://local:9001";
pub const CLOUD: &str = "wss://cloud/mqtt";

/// How a broker URL behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Normal broker.
    Up,
    /// The WebSocket never opens (host unreachable): the client must time out.
    Down,
    /// Socket opens, CONNECT is refused with this code.
    Refuse(ConnectReturnCode),
    /// Socket opens, nothing is ever answered or delivered: a zombie.
    Silent,
}

#[derive(Debug)]
struct BConn {
    url: String,
    decoder: Decoder,
    client_id: Option<String>,
    open: bool,
    next_pid: u16,
}

#[derive(Debug, Default)]
struct BSession {
    subs: Vec<(String, QoS)>,
    qos2_in: BTreeSet<u16>,
}

/// The broker + network + client harness.
pub struct Harness {
    pub client: Client,
    pub now: u64,
    /// Delay of everything the network delivers to the client (socket
    /// events, broker bytes); client bytes reach the broker at once, so this
    /// is also the round-trip time.
    pub latency: u64,
    pub modes: HashMap<String, Mode>,
    /// Split broker→client bytes into chunks of this size (decoder test).
    pub chunk: Option<usize>,
    /// Per URL: send PUBREC but never PUBCOMP (QoS 2 stuck in PUBREL stage).
    pub no_pubcomp: BTreeSet<String>,
    /// Per URL: keep sessions of `clean_session = false` clients.
    pub persist: bool,
    /// Feed socket data as the web shell does, with
    /// `Client::handle_data_lazy` (and drain at the time it used).
    pub lazy: bool,
    /// Frames fed that way, and how many of them read the clock.
    pub lazy_frames: u64,
    pub clock_reads: u64,
    conns: BTreeMap<SocketId, BConn>,
    sessions: HashMap<(String, String), BSession>,
    retained: HashMap<(String, String), (Vec<u8>, QoS)>,
    pending: Vec<(u64, u64, Input)>,
    seq: u64,
    next_timeout: Option<u64>,
    pub events: Vec<(u64, Event)>,
    pub opened: Vec<(u64, SocketId, String)>,
    pub closed: Vec<(u64, SocketId)>,
    /// Every `Output::Send`: time, socket, packets in it.
    pub sends: Vec<(u64, SocketId, usize)>,
    /// Every packet a broker received: time, socket, packet.
    pub received: Vec<(u64, SocketId, Packet)>,
}

pub fn endpoints() -> Vec<EndpointConfig> {
    vec![EndpointConfig::new(LOCAL, 2_000), EndpointConfig::new(CLOUD, 10_000)]
}

impl Harness {
    pub fn new(session: SessionConfig) -> Self {
        Self::with(endpoints(), session, BackoffConfig::default(), 7)
    }

    pub fn with(eps: Vec<EndpointConfig>, session: SessionConfig, backoff: BackoffConfig, seed: u64) -> Self {
        let config = ClientConfig { endpoints: eps.clone(), session, backoff };
        let client = Client::new(config, Rng::new(seed), 0).expect("valid config");
        let modes = eps.iter().map(|e| (e.url.clone(), Mode::Up)).collect();
        Harness {
            client,
            now: 0,
            latency: 10,
            modes,
            chunk: None,
            no_pubcomp: BTreeSet::new(),
            persist: true,
            lazy: false,
            lazy_frames: 0,
            clock_reads: 0,
            conns: BTreeMap::new(),
            sessions: HashMap::new(),
            retained: HashMap::new(),
            pending: Vec::new(),
            seq: 0,
            next_timeout: None,
            events: Vec::new(),
            opened: Vec::new(),
            closed: Vec::new(),
            sends: Vec::new(),
            received: Vec::new(),
        }
    }

    pub fn set_mode(&mut self, url: &str, mode: Mode) {
        self.modes.insert(url.to_owned(), mode);
    }

    fn mode(&self, url: &str) -> Mode {
        self.modes.get(url).copied().unwrap_or(Mode::Down)
    }

    fn schedule(&mut self, at: u64, input: Input) {
        self.seq += 1;
        self.pending.push((at, self.seq, input));
    }

    /// Drains the client's outputs (the single-mutation invariant).
    pub fn drain(&mut self) {
        self.drain_at(self.now);
    }

    /// [`Harness::drain`] at `now` (the time a lazy feed used).
    fn drain_at(&mut self, now: u64) {
        for _ in 0..100_000 {
            match self.client.poll_output(now) {
                Output::OpenSocket { id, url } => {
                    self.opened.push((self.now, id, url.clone()));
                    let mode = self.mode(&url);
                    self.conns.insert(id, BConn { url, decoder: Decoder::default(), client_id: None, open: false, next_pid: 0 });
                    if mode != Mode::Down {
                        self.schedule(self.now + self.latency, Input::SocketOpened(id));
                    }
                }
                Output::Send { id, bytes } => self.broker_receive(id, bytes),
                Output::CloseSocket { id } => {
                    self.closed.push((self.now, id));
                    if let Some(c) = self.conns.get_mut(&id) {
                        c.open = false;
                    }
                    self.pending.retain(|(_, _, i)| !matches!(i, Input::SocketData(s, _) | Input::SocketOpened(s) if *s == id));
                    // Browsers fire `close` even for our own close(): must be ignored.
                    self.schedule(self.now + self.latency, Input::SocketClosed(id));
                }
                Output::Event(e) => self.events.push((self.now, e)),
                Output::Timeout(t) => {
                    self.next_timeout = Some(t);
                    return;
                }
                Output::Idle => {
                    self.next_timeout = None;
                    return;
                }
            }
        }
        panic!("livelock: client never returned Timeout/Idle");
    }

    /// Input to the client now, then drain.
    pub fn input(&mut self, input: Input) {
        if let Input::SocketOpened(id) = &input {
            if let Some(c) = self.conns.get_mut(id) {
                c.open = true;
            }
        }
        let input = match input {
            Input::SocketData(id, bytes) if self.lazy => {
                let (now, mut read) = (self.now, false);
                let used = self.client.handle_data_lazy(id, bytes, || {
                    read = true;
                    now
                });
                self.lazy_frames += 1;
                self.clock_reads += u64::from(read);
                self.drain_at(used);
                return;
            }
            input => input,
        };
        self.client.handle_input(input, self.now);
        self.drain();
    }

    /// Advances the virtual clock to `t`, delivering everything due.
    pub fn run_until(&mut self, t: u64) {
        self.drain();
        for _ in 0..1_000_000 {
            let delivery = self.pending.iter().map(|p| (p.0, p.1)).min();
            let next = match (delivery.map(|d| d.0), self.next_timeout) {
                (Some(a), Some(b)) => a.min(b),
                (a, b) => match a.or(b) {
                    Some(x) => x,
                    None => break,
                },
            };
            if next > t {
                break;
            }
            self.now = self.now.max(next);
            if let Some((at, seq)) = delivery.filter(|d| d.0 <= self.now) {
                let i = self.pending.iter().position(|p| p.0 == at && p.1 == seq).expect("present");
                let (_, _, input) = self.pending.remove(i);
                self.input(input);
            } else {
                self.input(Input::Timeout);
            }
        }
        self.now = self.now.max(t);
        self.drain();
    }

    pub fn run_for(&mut self, ms: u64) {
        self.run_until(self.now + ms);
    }

    /// The socket of the established connection to `url`, if any.
    pub fn socket_to(&self, url: &str) -> Option<SocketId> {
        self.conns.iter().rev().find(|(_, c)| c.open && c.url == url && c.client_id.is_some()).map(|(id, _)| *id)
    }

    /// The broker side closes every socket to `url`.
    pub fn kill(&mut self, url: &str) {
        let ids: Vec<SocketId> = self.conns.iter().filter(|(_, c)| c.open && c.url == url).map(|(i, _)| *i).collect();
        for id in ids {
            if let Some(c) = self.conns.get_mut(&id) {
                c.open = false;
            }
            self.pending.retain(|(_, _, i)| !matches!(i, Input::SocketData(s, _) if *s == id));
            self.schedule(self.now + self.latency, Input::SocketClosed(id));
        }
    }

    /// What a shell does after each app call of a burst: takes the bytes
    /// [`Client::poll_transmit_over`] hands out at [`COALESCE_LIMIT`] and
    /// sends them as one frame. Returns that frame's length.
    pub fn send_early(&mut self) -> Option<usize> {
        let (id, bytes) = self.client.poll_transmit_over(COALESCE_LIMIT)?;
        let len = bytes.len();
        self.broker_receive(id, bytes);
        Some(len)
    }

    /// Raw bytes from the broker to a socket (after the latency).
    pub fn inject(&mut self, id: SocketId, packets: &[Packet]) {
        let mut bytes = Vec::new();
        for p in packets {
            encode(p, &mut bytes).expect("valid test packet");
        }
        self.deliver(id, bytes);
    }

    /// Raw bytes from the broker to a socket (after the latency).
    pub fn inject_raw(&mut self, id: SocketId, bytes: Vec<u8>) {
        self.deliver(id, bytes);
    }

    fn deliver(&mut self, id: SocketId, bytes: Vec<u8>) {
        if bytes.is_empty() {
            return;
        }
        let at = self.now + self.latency;
        match self.chunk {
            Some(n) => {
                for c in bytes.chunks(n.max(1)) {
                    self.schedule(at, Input::SocketData(id, c.to_vec()));
                }
            }
            None => self.schedule(at, Input::SocketData(id, bytes)),
        }
    }

    pub fn events(&self) -> impl Iterator<Item = &Event> {
        self.events.iter().map(|(_, e)| e)
    }

    pub fn take_events(&mut self) -> Vec<Event> {
        self.events.drain(..).map(|(_, e)| e).collect()
    }

    /// Packets received by the brokers matching `f`.
    pub fn received_where(&self, f: impl Fn(&Packet) -> bool) -> Vec<(u64, SocketId, Packet)> {
        self.received.iter().filter(|(_, _, p)| f(p)).cloned().collect()
    }

    fn broker_receive(&mut self, id: SocketId, bytes: Vec<u8>) {
        let Some(conn) = self.conns.get_mut(&id) else { panic!("send on unknown socket {id:?}") };
        assert!(conn.open, "send on a socket that is not open: {id:?}");
        let url = conn.url.clone();
        conn.decoder.feed(&bytes);
        let mut packets = Vec::new();
        while let Some(p) = conn.decoder.next_packet().expect("client sent a valid stream") {
            packets.push(p);
        }
        self.sends.push((self.now, id, packets.len()));
        let silent = self.mode(&url) == Mode::Silent;
        let mut out: BTreeMap<SocketId, Vec<u8>> = BTreeMap::new();
        for p in packets {
            self.received.push((self.now, id, p.clone()));
            if !silent {
                self.broker_packet(id, &url, p, &mut out);
            }
        }
        for (sid, bytes) in out {
            self.deliver(sid, bytes);
        }
    }

    fn broker_packet(&mut self, id: SocketId, url: &str, p: Packet, out: &mut BTreeMap<SocketId, Vec<u8>>) {
        let reply = |sid: SocketId, p: Packet, out: &mut BTreeMap<SocketId, Vec<u8>>| {
            encode(&p, out.entry(sid).or_default()).expect("valid broker packet");
        };
        let cid = self.conns.get(&id).and_then(|c| c.client_id.clone());
        match p {
            Packet::Connect(c) => {
                if let Mode::Refuse(code) = self.mode(url) {
                    reply(id, Packet::ConnAck(ConnAck { session_present: false, code }), out);
                    return;
                }
                let key = (url.to_owned(), c.client_id.clone());
                let present = self.persist && !c.clean_session && self.sessions.contains_key(&key);
                if !present {
                    self.sessions.insert(key, BSession::default());
                }
                if let Some(conn) = self.conns.get_mut(&id) {
                    conn.client_id = Some(c.client_id);
                }
                reply(id, Packet::ConnAck(ConnAck { session_present: present, code: ConnectReturnCode::Accepted }), out);
            }
            Packet::Publish(p) => {
                let key = (url.to_owned(), cid.unwrap_or_default());
                let fresh = match p.qos {
                    QoS::AtMostOnce => true,
                    QoS::AtLeastOnce => {
                        reply(id, Packet::PubAck(p.packet_id), out);
                        true
                    }
                    QoS::ExactlyOnce => {
                        reply(id, Packet::PubRec(p.packet_id), out);
                        self.sessions.entry(key).or_default().qos2_in.insert(p.packet_id)
                    }
                };
                if fresh {
                    self.route(url, &p, out);
                }
            }
            Packet::PubRel(pid) => {
                let key = (url.to_owned(), cid.unwrap_or_default());
                self.sessions.entry(key).or_default().qos2_in.remove(&pid);
                if !self.no_pubcomp.contains(url) {
                    reply(id, Packet::PubComp(pid), out);
                }
            }
            Packet::Subscribe(s) => {
                let key = (url.to_owned(), cid.unwrap_or_default());
                let sess = self.sessions.entry(key).or_default();
                let mut codes = Vec::new();
                for (f, q) in &s.filters {
                    if f.starts_with("forbidden/") {
                        codes.push(None);
                        continue;
                    }
                    sess.subs.retain(|(g, _)| g != f);
                    sess.subs.push((f.clone(), *q));
                    codes.push(Some(*q));
                }
                reply(id, Packet::SubAck(SubAck { packet_id: s.packet_id, return_codes: codes }), out);
                let mut retained: Vec<(String, Vec<u8>, QoS)> = self
                    .retained
                    .iter()
                    .filter(|((u, t), _)| u == url && s.filters.iter().any(|(f, _)| topic_matches(f, t)))
                    .map(|((_, t), (pl, q))| (t.clone(), pl.clone(), *q))
                    .collect();
                retained.sort();
                for (topic, payload, q) in retained {
                    let granted = s.filters.iter().filter(|(f, _)| topic_matches(f, &topic)).map(|(_, q)| *q).max();
                    let qos = q.min(granted.unwrap_or(QoS::AtMostOnce));
                    let packet_id = if qos == QoS::AtMostOnce { 0 } else { self.next_pid(id) };
                    let p = Publish { dup: false, qos, retain: true, topic, packet_id, payload };
                    reply(id, Packet::Publish(p), out);
                }
            }
            Packet::Unsubscribe(u) => {
                let key = (url.to_owned(), cid.unwrap_or_default());
                let sess = self.sessions.entry(key).or_default();
                sess.subs.retain(|(g, _)| !u.filters.contains(g));
                reply(id, Packet::UnsubAck(u.packet_id), out);
            }
            Packet::PingReq => reply(id, Packet::PingResp, out),
            Packet::PubAck(_) | Packet::PubRec(_) | Packet::PubComp(_) | Packet::Disconnect => {
                if let Packet::PubRec(pid) = p {
                    reply(id, Packet::PubRel(pid), out);
                }
            }
            other => panic!("client sent {other:?}"),
        }
    }

    fn next_pid(&mut self, id: SocketId) -> u16 {
        let c = self.conns.get_mut(&id).expect("conn");
        c.next_pid = c.next_pid.wrapping_add(1).max(1);
        c.next_pid
    }

    fn route(&mut self, url: &str, p: &Publish, out: &mut BTreeMap<SocketId, Vec<u8>>) {
        if p.retain {
            let key = (url.to_owned(), p.topic.clone());
            if p.payload.is_empty() {
                self.retained.remove(&key);
            } else {
                self.retained.insert(key, (p.payload.clone(), p.qos));
            }
        }
        let targets: Vec<(SocketId, QoS)> = self
            .conns
            .iter()
            .filter(|(_, c)| c.open && c.url == url && c.client_id.is_some())
            .filter_map(|(sid, c)| {
                let key = (url.to_owned(), c.client_id.clone().unwrap_or_default());
                let subs = &self.sessions.get(&key)?.subs;
                let q = subs.iter().filter(|(f, _)| topic_matches(f, &p.topic)).map(|(_, q)| *q).max()?;
                Some((*sid, q.min(p.qos)))
            })
            .collect();
        for (sid, qos) in targets {
            let packet_id = if qos == QoS::AtMostOnce { 0 } else { self.next_pid(sid) };
            let fwd = Publish { dup: false, qos, retain: false, topic: p.topic.clone(), packet_id, payload: p.payload.clone() };
            encode(&Packet::Publish(fwd), out.entry(sid).or_default()).expect("valid");
        }
    }
}
