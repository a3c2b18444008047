//! Routing through whole `MeshNode`s: the in-memory broker plus simulated
//! data channels (open 30 ms after `RtcCommand::Connect`, 2 ms per message, FIFO;
//! closing one end reports `Closed` at the other). Signalling itself is the
//! browser's (tests/browser_rtc.rs); here `RtcCommand::Connect` stands for it.

use super::*;
use crate::routing::{Dest, Route};
use std::collections::BTreeMap;

#[derive(Debug, Clone)]
pub(super) enum RtcEv {
    Open,
    Closed,
    Msg(Vec<u8>),
}

const ROOM: &str = "chat";

impl Net {
    pub(super) fn index_of(&self, id: &str) -> Option<usize> {
        self.devs.iter().position(|d| d.id == id)
    }

    pub(super) fn pair(a: usize, b: usize) -> (usize, usize) {
        (a.min(b), a.max(b))
    }

    pub(super) fn rtc_event(&mut self, at: u64, to: usize, from: usize, ev: RtcEv) {
        let inc = self.devs[to].inc;
        self.push(at, Ev::Rtc { to, inc, from, ev });
    }

    pub(super) fn rtc_output(&mut self, i: usize, o: Output) {
        let now = self.now;
        match o {
            Output::Rtc(RtcCommand::Connect { peer }) => {
                let Some(j) = self.index_of(&peer) else { return };
                if !self.rtc_blocked && self.devs[j].node.is_some() {
                    self.rtc.remove(&Net::pair(i, j));
                    self.rtc_event(now + 30, i, j, RtcEv::Open);
                    self.rtc_event(now + 30, j, i, RtcEv::Open);
                }
            }
            Output::Rtc(RtcCommand::Close { peer }) => {
                let Some(j) = self.index_of(&peer) else { return };
                if self.rtc.remove(&Net::pair(i, j)) {
                    self.rtc_event(now + 5, j, i, RtcEv::Closed);
                }
            }
            Output::SendRtc { peer, bytes } => {
                let Some(j) = self.index_of(&peer) else { return };
                if self.rtc.contains(&Net::pair(i, j)) {
                    self.rtc_event(now + 2, j, i, RtcEv::Msg(bytes));
                }
            }
            _ => {}
        }
    }

    pub(super) fn process_rtc(&mut self, ev: Ev) {
        let Ev::Rtc { to, inc, from, ev } = ev else { return };
        if !self.live(to, inc) {
            return;
        }
        let (now, peer, skew) = (self.now, self.devs[from].id.clone(), self.devs[to].skew);
        let node = self.devs[to].node.as_mut().unwrap();
        match ev {
            RtcEv::Open => {
                self.rtc.insert(Net::pair(to, from));
                node.handle_rtc(&peer, true, now);
            }
            RtcEv::Closed => node.handle_rtc(&peer, false, now),
            RtcEv::Msg(bytes) => {
                if !self.rtc.contains(&Net::pair(to, from)) {
                    return;
                }
                node.handle_rtc_message(&peer, &bytes, now, (WALL0 + now).saturating_add_signed(skew));
            }
        }
        self.drain(to);
    }

    /// Both ends of the channel between `a` and `b` report it closed.
    pub(super) fn kill_rtc(&mut self, a: usize, b: usize) {
        if self.rtc.remove(&Net::pair(a, b)) {
            let now = self.now;
            self.rtc_event(now + 1, a, b, RtcEv::Closed);
            self.rtc_event(now + 1, b, a, RtcEv::Closed);
        }
    }

    /// The broker stops: every connection drops, nothing in flight arrives.
    pub(super) fn broker_down(&mut self) {
        self.broker_off = true;
        let now = self.now;
        for i in 0..self.devs.len() {
            if std::mem::replace(&mut self.devs[i].connected, false) {
                self.devs[i].node.as_mut().unwrap().handle_transport(false, now);
                self.drain(i);
            }
        }
    }

    /// The broker is back: everyone reconnects 50–100 ms later.
    pub(super) fn broker_up(&mut self) {
        self.broker_off = false;
        for i in 0..self.devs.len() {
            let (inc, at) = (self.devs[i].inc, self.now + self.rand(50, 100));
            self.push(at, Ev::Connect { to: i, inc });
        }
    }

    pub(super) fn join_all(&mut self, room: &str) {
        let now = self.now;
        for i in 0..self.devs.len() {
            let node = self.devs[i].node.as_mut().unwrap();
            assert_eq!(node.join_room(room, now), Ok(true));
            self.devs[i].subs = node.subscriptions();
            self.drain(i);
        }
    }

    pub(super) fn send_room(&mut self, i: usize, text: &str) -> u64 {
        let now = self.now;
        let id = self.devs[i].node.as_mut().unwrap().send(Dest::Room(ROOM.into()), text.as_bytes().to_vec(), now).unwrap();
        self.drain(i);
        id
    }

    /// (sender, id) → times delivered, per device.
    fn delivered_counts(&self, i: usize) -> BTreeMap<(String, u64), usize> {
        let mut m = BTreeMap::new();
        for (_, d) in &self.devs[i].delivered {
            *m.entry((d.from.clone(), d.id)).or_insert(0) += 1;
        }
        m
    }
}

/// Three devices announcing WEBRTC, elected, in room `chat`.
pub(super) fn meshed(seed: u64) -> Net {
    let mut net = Net::new(seed, trio());
    net.webrtc = true;
    net.start_all();
    assert!(net.until(3_000, |n| n.agreed(&[0, 1, 2]).is_some()).is_some(), "seed {seed}: no hub");
    net.join_all(ROOM);
    net
}

pub(super) fn rtc_up_everywhere(net: &Net) -> bool {
    net.rtc.len() == 3
        && (0..3).all(|i| {
            net.node(i).router().stats().peers.iter().all(|p| p.routes.iter().any(|r| r.route == Route::Rtc && r.up))
        })
}

fn assert_exactly_once(net: &Net, sent: &[(usize, u64)]) {
    for i in 0..net.devs.len() {
        let got = net.delivered_counts(i);
        let want: BTreeMap<(String, u64), usize> =
            sent.iter().filter(|(s, _)| *s != i).map(|(s, id)| ((net.devs[*s].id.clone(), *id), 1)).collect();
        assert_eq!(got, want, "device {i} (seed {})", net.seed);
        assert_accounted(&net.node(i).stats());
    }
}

#[test]
fn room_messages_open_data_channels_and_arrive_exactly_once() {
    let mut net = meshed(21);
    let mut sent = Vec::new();
    for k in 0..10 {
        for i in 0..3 {
            sent.push((i, net.send_room(i, &format!("m{k}"))));
        }
        net.run_until(net.now + 50);
    }
    let up = net.until(net.now + 5_000, rtc_up_everywhere);
    assert!(up.is_some(), "data channels between every pair");
    for k in 0..10 {
        for i in 0..3 {
            sent.push((i, net.send_room(i, &format!("n{k}"))));
        }
        net.run_until(net.now + 20);
    }
    net.run_until(net.now + 2_000);
    assert_exactly_once(&net, &sent);
    let s = net.node(0).router().stats();
    let rtc_in: u64 = s.peers.iter().map(|p| p.routes[Route::Rtc as usize].counters.msgs_in).sum();
    assert!(rtc_in > 0, "{s:#?}");
    assert!(net.node(0).stats().traffic.routing.msgs_out > 0);
    // Joins announced WEBRTC.
    let info = net.node(1).stats().peers.iter().find(|p| p.device == "kiosk-1").and_then(|p| p.presence.clone()).unwrap();
    assert!(info.capabilities.contains(Capabilities::WEBRTC));
}

#[test]
fn with_the_broker_down_messages_keep_flowing_over_data_channels() {
    let mut net = meshed(22);
    let mut sent = vec![(0, net.send_room(0, "hello"))];
    net.until(net.now + 5_000, rtc_up_everywhere).expect("channels");
    net.broker_down();
    for k in 0..30 {
        sent.push((k % 3, net.send_room(k % 3, "offline")));
        net.run_until(net.now + 100);
    }
    net.run_until(net.now + 1_000);
    assert_exactly_once(&net, &sent);
    // Direct messages too, well past the election's silence bound.
    net.run_until(net.now + 5_000);
    let now = net.now;
    let id = net.devs[2].node.as_mut().unwrap().send(Dest::Peer("kiosk-1".into()), b"cmd".to_vec(), now).unwrap();
    net.drain(2);
    net.run_until(net.now + 500);
    assert!(net.devs[0].delivered.iter().any(|(_, d)| d.from == "ipad-1" && d.id == id && d.room.is_none()));
}

#[test]
fn a_closed_data_channel_falls_back_to_the_broker_within_two_seconds() {
    let mut net = meshed(23);
    net.send_room(0, "warm up");
    net.until(net.now + 5_000, rtc_up_everywhere).expect("channels");
    net.run_until(net.now + 500);
    net.rtc_blocked = true;
    net.kill_rtc(0, 1);
    net.run_until(net.now + 10);
    let t0 = net.now;
    let id = net.devs[0].node.as_mut().unwrap().send(Dest::Peer("pos-1".into()), b"after".to_vec(), t0).unwrap();
    net.drain(0);
    let got = net.until(t0 + 5_000, |n| n.devs[1].delivered.iter().any(|(_, d)| d.id == id && d.from == "kiosk-1"));
    assert!(got.is_some_and(|t| t - t0 < 2_000), "{got:?} from {t0}");
    let best = net.node(0).router().stats().peers.iter().find(|p| p.peer == "pos-1").and_then(|p| p.best);
    assert_eq!(best, Some(Route::Broker));
}

#[test]
fn a_thousand_messages_with_routes_failing_and_recovering_arrive_exactly_once() {
    for seed in [31, 32, 33] {
        let mut net = meshed(seed);
        let mut sent = Vec::new();
        let mut broker = true;
        for k in 0..1_000u64 {
            let from = net.rand(0, 2) as usize;
            sent.push((from, net.send_room(from, &format!("m{k}"))));
            match net.rand(0, 99) {
                0 | 1 => {
                    let (a, b) = (net.rand(0, 2) as usize, net.rand(0, 2) as usize);
                    if a != b {
                        net.kill_rtc(a, b);
                    }
                }
                2 if broker => {
                    net.broker_down();
                    broker = false;
                }
                3 | 4 if !broker => {
                    net.broker_up();
                    broker = true;
                }
                _ => {}
            }
            net.rtc_blocked = net.rand(0, 9) == 0;
            let step = net.rand(1, 20);
            net.run_until(net.now + step);
        }
        net.rtc_blocked = false;
        if !broker {
            net.broker_up();
        }
        net.run_until(net.now + 10_000);
        assert_exactly_once(&net, &sent);
    }
}

#[test]
fn a_crashed_device_stays_addressed_for_the_give_up_time_then_is_forgotten() {
    let mut net = meshed(24);
    net.send_room(0, "warm up");
    net.until(net.now + 5_000, rtc_up_everywhere).expect("channels");
    let known = |net: &Net| net.node(0).router().stats().peers.iter().any(|p| p.peer == "ipad-1");
    net.crash(2);
    let left = net.until(net.now + 5_000, |n| n.events(0).any(|e| matches!(e, MeshEvent::PeerLeft { device, .. } if device == "ipad-1")));
    let left = left.expect("the election notices");
    // A blip (broker restart, lost Wi-Fi) would end within this window: still addressed.
    net.run_until(left + 20_000);
    assert!(known(&net), "kept for the give-up time");
    net.run_until(left + 31_000);
    assert!(!known(&net), "forgotten after it");
    // Room messages now go to the one live peer only, and arrive.
    let id = net.send_room(0, "after");
    net.run_until(net.now + 500);
    assert!(net.devs[1].delivered.iter().any(|(_, d)| d.id == id && d.from == "kiosk-1"));
    assert_eq!(net.node(0).router().stats().pending, 0, "nothing waits for the crashed device");
    // It comes back: addressed again.
    net.start(2);
    net.until(net.now + 5_000, known).expect("re-added when it rejoins");
}
