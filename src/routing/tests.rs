//! Router tests: direct calls for the API's edges, and scripted scenarios on
//! the routing simulator (virtual time, no randomness unless a test adds
//! loss) for failover, breakers, tabs, rooms and signalling.

use super::wire::{self, AppBody, Data};
use super::*;
use crate::sim::routing::{Action, NetParams, RouteWorld, Setup};
use std::collections::BTreeSet;

fn setup(n: usize) -> Setup {
    Setup {
        ids: (0..n).map(|i| format!("d{i}")).collect(),
        rtc_capable: vec![true; n],
        tabs: BTreeSet::new(),
        rtc_blocked: BTreeSet::new(),
        rooms: Vec::new(),
        max_mesh_room: 5,
        net: NetParams { broker: (60, 60), rtc: (10, 10), tab: (1, 1), rtc_open: (50, 50), ..NetParams::default() },
    }
}

fn world(s: Setup) -> RouteWorld {
    let n = s.ids.len();
    let mut w = RouteWorld::new(1, s, false);
    for i in 0..n {
        w.at(10, Action::BrokerUp(i));
    }
    w
}

fn send(w: &mut RouteWorld, t: u64, from: usize, to: Dest, id: u64) {
    w.at(t, Action::Send { from, to, id });
}

fn peer(i: usize) -> Dest {
    Dest::Peer(format!("d{i}"))
}

/// The latest delivery time minus send time over messages sent in `range`.
fn worst_latency(w: &RouteWorld, range: std::ops::Range<u64>) -> u64 {
    let mut worst = 0;
    for s in w.sent().iter().filter(|s| range.contains(&s.at)) {
        for (at, i, d) in w.delivered() {
            if s.to.contains(i) && d.id == s.id && w.index(&d.from) == Some(s.from) {
                worst = worst.max(at - s.at);
            }
        }
    }
    worst
}

fn best(w: &RouteWorld, i: usize, p: &str) -> Option<Route> {
    w.router(i).stats().peers.iter().find(|x| x.peer == p).and_then(|x| x.best)
}

fn route_stats(w: &RouteWorld, i: usize, p: &str, r: Route) -> RouteStats {
    let s = w.router(i).stats();
    s.peers.iter().find(|x| x.peer == p).expect("known peer").routes[r as usize].clone()
}

/// Seed 001's last ping / pong per peer: a probe sent stamps the route's
/// `last_probe_at`, its reply `last_reply_at` (after it).
#[test]
fn probes_and_their_replies_are_stamped() {
    let mut w = world(setup(2));
    send(&mut w, 100, 0, peer(1), 1);
    w.run_until(3_000);
    let c = route_stats(&w, 0, "d1", Route::Rtc).counters;
    assert!(c.probes > 0 && c.last_probe_at > 0, "probed when it opened: {c:?}");
    assert!(c.last_reply_at >= c.last_probe_at, "the reply came after the probe: {c:?}");
    let idle = route_stats(&w, 0, "d1", Route::Tab).counters;
    assert_eq!((idle.last_probe_at, idle.last_reply_at), (0, 0), "no tab route: never probed");
}

#[test]
fn data_channel_comes_up_and_is_preferred() {
    let mut w = world(setup(2));
    send(&mut w, 100, 0, peer(1), 1); // activity makes d0 offer a channel
    w.run_until(3_000);
    assert_eq!(best(&w, 0, "d1"), Some(Route::Rtc));
    assert_eq!(best(&w, 1, "d0"), Some(Route::Rtc));
    assert!(route_stats(&w, 0, "d1", Route::Rtc).srtt_ms.is_some(), "probed when it opened");
    for k in 0..20 {
        send(&mut w, 3_000 + k * 50, 0, peer(1), 10 + k);
    }
    w.run_until(6_000);
    assert_eq!(route_stats(&w, 0, "d1", Route::Rtc).counters.acked, 20);
    assert!(w.check(true).is_empty(), "{:?}", w.check(true));
}

#[test]
fn the_greater_id_asks_the_smaller_one_to_offer() {
    let mut w = world(setup(2));
    send(&mut w, 100, 1, peer(0), 1); // only d1 is active: it sends Request
    w.run_until(3_000);
    assert_eq!(w.router(0).stats().peers[0].rtc, "open");
    assert_eq!(w.router(1).stats().peers[0].rtc, "open");
}

#[test]
fn a_silently_dying_channel_hands_over_within_two_seconds_without_loss() {
    let mut w = world(setup(2));
    send(&mut w, 100, 0, peer(1), 1);
    for k in 0..200 {
        send(&mut w, 2_000 + k * 50, 0, peer(1), 10 + k);
    }
    w.at(5_000, Action::RtcKill(0, 1)); // no close event until SCTP notices
    w.at(20_000, Action::RtcDetect(0, 1));
    w.run_until(30_000);
    assert!(w.check(true).is_empty(), "{:?}", w.check(true));
    assert!(worst_latency(&w, 4_000..12_000) < 2_000, "{}", worst_latency(&w, 4_000..12_000));
    let trips = route_stats(&w, 0, "d1", Route::Rtc).trips;
    assert!(trips >= 1, "the rtc breaker opened");
    assert!(route_stats(&w, 0, "d1", Route::Broker).counters.acked > 100);
}

#[test]
fn a_cleanly_closed_channel_hands_over_at_once_and_reopens() {
    let mut w = world(setup(2));
    send(&mut w, 100, 0, peer(1), 1);
    for k in 0..100 {
        send(&mut w, 2_000 + k * 50, 0, peer(1), 10 + k);
    }
    w.at(3_000, Action::RtcClose(0, 1));
    w.run_until(12_000);
    assert!(w.check(true).is_empty(), "{:?}", w.check(true));
    // the close reaches the router within 30 ms; copies in flight go at once
    assert!(worst_latency(&w, 2_900..3_100) < 500, "{}", worst_latency(&w, 2_900..3_100));
    assert_eq!(best(&w, 0, "d1"), Some(Route::Rtc), "reconnected after the retry delay");
}

#[test]
fn breaker_half_opens_and_closes_when_the_route_revives() {
    let mut w = world(setup(2));
    send(&mut w, 100, 0, peer(1), 1);
    for k in 0..40 {
        send(&mut w, 2_000 + k * 100, 0, peer(1), 10 + k);
    }
    w.at(2_500, Action::RtcKill(0, 1));
    w.at(4_000, Action::RtcRevive(0, 1));
    w.run_until(20_000);
    let states: Vec<&str> = w
        .events()
        .iter()
        .filter_map(|(_, i, e)| match e {
            RouterEvent::Breaker { route: Route::Rtc, state, .. } if *i == 0 => Some(state.name()),
            _ => None,
        })
        .collect();
    let at = |s: &str| states.iter().position(|x| *x == s);
    assert!(at("open") < at("half-open") && at("half-open").is_some(), "{states:?}");
    assert_eq!(states.last(), Some(&"closed"), "{states:?}");
    assert_eq!(best(&w, 0, "d1"), Some(Route::Rtc));
    assert!(w.check(true).is_empty(), "{:?}", w.check(true));
}

#[test]
fn lossy_duplicating_routes_still_deliver_exactly_once_in_order() {
    let mut s = setup(3);
    s.net.loss = [0.2, 0.2, 0.2];
    s.net.dup = [0.3, 0.3, 0.3];
    s.rooms = vec![("all".into(), vec![0, 1, 2])];
    let mut w = RouteWorld::new(7, s, false);
    for i in 0..3 {
        w.at(10, Action::BrokerUp(i));
    }
    for k in 0..300u64 {
        let from = (k % 3) as usize;
        let to = if k % 4 == 0 { Dest::Room("all".into()) } else { peer((from + 1 + (k as usize / 3) % 2) % 3) };
        send(&mut w, 200 + k * 20, from, to, k + 1);
    }
    w.at(7_000, Action::Loss(Route::Tab, 0.0));
    w.at(7_000, Action::Loss(Route::Rtc, 0.0));
    w.at(7_000, Action::Loss(Route::Broker, 0.0));
    w.run_until(30_000);
    assert!(w.check(true).is_empty(), "{:?}", w.check(true));
    let dups: u64 = (0..3).map(|i| w.router(i).stats().counters.duplicates).sum();
    assert!(dups > 0);
}

#[test]
fn tabs_are_found_and_preferred_and_get_no_data_channel() {
    let mut s = setup(3);
    s.tabs.insert((0, 1));
    let mut w = world(s);
    send(&mut w, 500, 0, peer(1), 1);
    send(&mut w, 500, 0, peer(2), 2);
    w.run_until(3_000);
    assert_eq!(best(&w, 0, "d1"), Some(Route::Tab));
    assert_eq!(best(&w, 1, "d0"), Some(Route::Tab));
    assert_eq!(best(&w, 0, "d2"), Some(Route::Rtc));
    let p = w.router(0).stats().peers.iter().find(|p| p.peer == "d1").map(|p| p.rtc);
    assert_eq!(p, Some("idle"));
    assert_eq!(route_stats(&w, 0, "d1", Route::Tab).counters.acked, 1);
    assert!(w.check(true).is_empty(), "{:?}", w.check(true));
}

#[test]
fn small_rooms_are_meshed_and_big_ones_use_the_broker_topic() {
    let mut s = setup(7);
    s.rooms = vec![("five".into(), (0..5).collect()), ("seven".into(), (0..7).collect())];
    let mut w = world(s);
    w.run_until(100);
    assert_eq!(w.router(0).room_mode("five"), Some(RoomMode::Mesh));
    assert_eq!(w.router(0).room_mode("seven"), Some(RoomMode::Broker));
    for k in 0..10 {
        send(&mut w, 200 + k * 30, 0, Dest::Room("five".into()), 1 + 2 * k);
        send(&mut w, 200 + k * 30, 0, Dest::Room("seven".into()), 2 + 2 * k);
    }
    w.run_until(5_000);
    assert!(w.check(true).is_empty(), "{:?}", w.check(true));
    let c = w.router(0).stats().counters;
    assert_eq!(c.room_broadcasts, 10);
    assert_eq!(c.acked, 40, "4 acked copies per meshed message");
    // meshed rooms open data channels to their members, big ones do not
    let rtc = |p: &str| w.router(0).stats().peers.iter().find(|x| x.peer == p).map(|x| x.rtc);
    assert_eq!((rtc("d1"), rtc("d6")), (Some("open"), Some("idle")));
}

#[test]
fn without_the_broker_channels_keep_carrying_direct_and_room_messages() {
    let mut s = setup(3);
    s.rooms = vec![("all".into(), vec![0, 1, 2])];
    s.max_mesh_room = 2; // "all" goes through the broker topic while it is up
    let mut w = world(s);
    for (a, b) in [(0, 1), (0, 2), (1, 2)] {
        send(&mut w, 100, a, peer(b), 1 + b as u64);
    }
    w.run_until(3_000);
    for i in 0..3 {
        w.at(3_000, Action::BrokerDown(i));
    }
    for k in 0..30u64 {
        let from = (k % 3) as usize;
        let to = if k % 2 == 0 { Dest::Room("all".into()) } else { peer((from + 1) % 3) };
        send(&mut w, 3_100 + k * 40, from, to, 100 + k);
    }
    w.run_until(8_000);
    assert!(w.check(true).is_empty(), "{:?}", w.check(true));
    assert_eq!(w.router(0).room_mode("all"), Some(RoomMode::Mesh), "falls back while the broker is down");
    assert!(w.sent().iter().filter(|s| s.at >= 3_000).all(|s| !s.broker_room));
}

#[test]
fn an_unreachable_peer_is_reported_after_give_up() {
    let mut s = setup(2);
    s.rtc_capable = vec![false, false];
    let mut w = RouteWorld::new(1, s, false);
    w.at(10, Action::BrokerUp(0)); // d1 never connects
    send(&mut w, 100, 0, peer(1), 5);
    w.run_until(40_000);
    let undeliverable: Vec<_> = w.events().iter().filter(|(_, _, e)| matches!(e, RouterEvent::Undeliverable { .. })).collect();
    assert_eq!(undeliverable.len(), 1);
    assert_eq!(undeliverable[0].2, RouterEvent::Undeliverable { to: "d1".into(), room: None, id: 5 });
    assert!(undeliverable[0].0 >= 30_100);
    assert_eq!(w.router(0).stats().pending, 0);
}

// ----- direct calls ----------------------------------------------------------

fn router(me: &str) -> Router {
    Router::new(RouterConfig::new(me, 9)).expect("valid")
}

fn drain(r: &mut Router, now: u64) -> Vec<Output> {
    let mut v = Vec::new();
    loop {
        match r.poll_output(now) {
            Output::Timeout(_) => return v,
            o => v.push(o),
        }
    }
}

fn data(epoch: u64, seq: u64, base: u64, id: u64) -> Vec<u8> {
    AppBody::Data(Data { ack: true, room: None, epoch, seq, base, id, attempt: 1, payload: vec![id as u8] }).encode().unwrap()
}

#[test]
fn config_and_send_errors() {
    assert_eq!(Router::new(RouterConfig::new("a b", 1)).err(), Some(ConfigError::BadDeviceId));
    let mut c = RouterConfig::new("a", 1);
    c.dedup_age_ms = c.give_up_ms;
    assert_eq!(Router::new(c).err(), Some(ConfigError::DedupTooShort));
    let mut c = RouterConfig::new("a", 1);
    c.max_pending = 2;
    let mut r = Router::new(c).unwrap();
    assert_eq!(r.send(Dest::Peer("a".into()), 1, vec![], 0), Err(SendError::BadPeer));
    assert_eq!(r.send(Dest::Peer("x/y".into()), 1, vec![], 0), Err(SendError::BadPeer));
    assert_eq!(r.send(Dest::Room("r".into()), 1, vec![], 0), Err(SendError::UnknownRoom));
    assert_eq!(r.send(Dest::Peer("b".into()), 1, vec![0; 64 * 1024 + 1], 0), Err(SendError::TooLarge));
    assert_eq!(r.send(Dest::Peer("b".into()), 1, vec![], 0), Ok(()));
    assert_eq!(r.send(Dest::Peer("b".into()), 1, vec![], 0), Err(SendError::DuplicateId));
    assert_eq!(r.send(Dest::Peer("c".into()), 2, vec![], 0), Ok(()));
    assert_eq!(r.send(Dest::Peer("c".into()), 3, vec![], 0), Err(SendError::Backpressure));
    assert!(r.join_room("bad room", &["b"], 0).is_err());
    // nothing is sent without a route; the copies wait
    assert!(drain(&mut r, 0).iter().all(|o| !matches!(o, Output::Transmit { kind: crate::envelope::Kind::AppMessage, .. })));
    assert_eq!(r.stats().pending, 2);
    r.handle_broker(true, 5);
    let sent = drain(&mut r, 5).iter().filter(|o| matches!(o, Output::Transmit { route: Route::Broker, .. })).count();
    assert!(sent >= 2, "parked copies leave when the broker connects");
}

#[test]
fn receiving_dedups_orders_acks_and_counts_bad_bodies() {
    use crate::envelope::Kind;
    let mut r = router("b");
    r.handle_broker(true, 0);
    r.handle_received(Route::Broker, "a", Kind::AppMessage, &data(3, 2, 1, 20), 0).unwrap();
    r.handle_received(Route::Rtc, "a", Kind::AppMessage, &data(3, 2, 1, 20), 1).unwrap(); // duplicate
    let out = drain(&mut r, 1);
    assert!(!out.iter().any(|o| matches!(o, Output::Deliver(_))), "2 waits for 1");
    let acks = out.iter().filter(|o| matches!(o, Output::Transmit { kind: Kind::AppMessage, .. })).count();
    assert_eq!(acks, 2, "each copy is acked on its own route (rtc falls back to the broker)");
    r.handle_received(Route::Broker, "a", Kind::AppMessage, &data(3, 1, 1, 10), 2).unwrap();
    let ids: Vec<u64> = drain(&mut r, 2).into_iter().filter_map(|o| if let Output::Deliver(d) = o { Some(d.id) } else { None }).collect();
    assert_eq!(ids, [10, 20]);
    // the sender restarted (new epoch): its seq 1 is new
    r.handle_received(Route::Broker, "a", Kind::AppMessage, &data(4, 1, 1, 10), 3).unwrap();
    assert!(drain(&mut r, 3).iter().any(|o| matches!(o, Output::Deliver(d) if d.id == 10)));
    // our own room echo, bad bodies, unknown kinds
    r.handle_received(Route::Broker, "b", Kind::AppMessage, &data(9, 1, 1, 1), 4).unwrap();
    assert!(r.handle_received(Route::Broker, "a", Kind::AppMessage, &[0x09], 4).is_err());
    assert!(r.handle_received(Route::Broker, "a", Kind::Probe, &[], 4).is_err());
    assert!(r.handle_received(Route::Broker, "a", Kind::Heartbeat, &[1, 2], 4).is_ok());
    let s = r.stats().counters;
    assert_eq!((s.delivered, s.duplicates, s.bad_body), (3, 1, 2));
}

#[test]
fn acks_for_another_epoch_or_unknown_ids_are_stale() {
    use crate::envelope::Kind;
    let mut r = router("a");
    r.handle_broker(true, 0);
    r.send(Dest::Peer("b".into()), 7, b"x".to_vec(), 0).unwrap();
    drain(&mut r, 0);
    let ack = |epoch, id| AppBody::Ack(wire::Ack { epoch, entries: vec![wire::AckEntry { id, attempt: 1 }] }).encode().unwrap();
    r.handle_received(Route::Broker, "b", Kind::AppMessage, &ack(8, 7), 10).unwrap();
    r.handle_received(Route::Broker, "b", Kind::AppMessage, &ack(9, 6), 10).unwrap();
    assert_eq!(r.stats().pending, 1);
    r.handle_received(Route::Broker, "b", Kind::AppMessage, &ack(9, 7), 60).unwrap();
    let s = r.stats();
    assert_eq!((s.pending, s.counters.acked, s.counters.stale_acks), (0, 1, 2));
    let broker = &s.peers[0].routes[Route::Broker as usize];
    assert_eq!(broker.srtt_ms, Some(60.0));
}

#[test]
fn probes_are_answered_on_their_route_and_signals_pass_through() {
    use crate::envelope::Kind;
    let mut r = router("b");
    r.handle_broker(true, 0);
    r.handle_received(Route::Tab, "a", Kind::Probe, &wire::encode_probe(5), 0).unwrap();
    let out = drain(&mut r, 0);
    assert!(out.contains(&Output::Transmit { route: Route::Tab, to: Addr::Peer("a".into()), kind: Kind::ProbeReply, body: wire::encode_probe_reply(5) }));
    assert!(r.stats().peers[0].routes[0].up, "a probe over the tab channel reveals a tab");
    let offer = wire::Signal::Offer { session: 1, sdp: "v=0".into() }.encode().unwrap();
    r.handle_received(Route::Broker, "a", Kind::RtcSignal, &offer, 1).unwrap();
    assert!(drain(&mut r, 1).contains(&Output::Rtc(RtcCommand::Signal { from: "a".into(), body: offer })));
    // "b" > "a": a Request from "a" is not for us to answer with an offer
    r.handle_received(Route::Broker, "a", Kind::RtcSignal, &[wire::SIGNAL_REQUEST], 2).unwrap();
    assert!(!drain(&mut r, 2).iter().any(|o| matches!(o, Output::Rtc(RtcCommand::Connect { .. }))));
    let mut a = router("a");
    a.handle_received(Route::Broker, "b", Kind::RtcSignal, &[wire::SIGNAL_REQUEST], 2).unwrap();
    assert!(drain(&mut a, 2).contains(&Output::Rtc(RtcCommand::Connect { peer: "b".into() })));
    // signals travel by tab when the peer is a tab here, else by broker
    r.send_signal("a", vec![1], 3);
    assert!(drain(&mut r, 3).iter().any(|o| matches!(o, Output::Transmit { route: Route::Tab, kind: Kind::RtcSignal, .. })));
}

#[test]
fn removing_a_peer_reports_its_copies_and_closes_its_channel() {
    let mut r = router("a");
    r.handle_broker(true, 0);
    r.add_peer("b", true, 0);
    r.handle_route("b", Route::Rtc, true, 0);
    r.send(Dest::Peer("b".into()), 1, vec![], 0).unwrap();
    drain(&mut r, 0);
    r.remove_peer("b", 10);
    let out = drain(&mut r, 10);
    assert!(out.contains(&Output::Rtc(RtcCommand::Close { peer: "b".into() })));
    assert!(out.contains(&Output::Event(RouterEvent::Undeliverable { to: "b".into(), room: None, id: 1 })));
    assert!(r.stats().peers.is_empty());
}

#[test]
fn an_idle_router_needs_no_timer() {
    let mut r = router("a");
    assert_eq!(r.poll_output(0), Output::Timeout(u64::MAX));
    assert_eq!(r.poll_timeout(), None);
}

/// The room example of PROTOCOL.md Part 5 §3.1: every member's copy of one
/// room message carries the same id and the same seq (the room's own
/// counter, apart from the direct conversation's), and its own `base`.
#[test]
fn documented_room_copies_share_id_and_seq() {
    use crate::envelope::Kind;
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let mut r = Router::new(RouterConfig::new("a", 7)).expect("valid");
    r.handle_broker(true, 0);
    r.join_room("chat", &["a", "b", "c"], 0).unwrap();
    r.send(Dest::Peer("b".into()), 1, b"yo".to_vec(), 0).unwrap(); // direct: seq 1 of a→b
    r.send(Dest::Room("chat".into()), 2, b"hi".to_vec(), 0).unwrap(); // room: seq 1
    drain(&mut r, 0);
    let ack = AppBody::Ack(wire::Ack { epoch: 7, entries: vec![wire::AckEntry { id: 2, attempt: 1 }] }).encode().unwrap();
    r.handle_received(Route::Broker, "c", Kind::AppMessage, &ack, 5).unwrap(); // c has seq 1, b not yet
    drain(&mut r, 5);
    r.send(Dest::Room("chat".into()), 3, b"hi".to_vec(), 10).unwrap(); // room: seq 2
    let copies: Vec<(String, String)> = drain(&mut r, 10)
        .into_iter()
        .filter_map(|o| match o {
            Output::Transmit { to: Addr::Peer(p), kind: Kind::AppMessage, body, .. } if body[0] == wire::TYPE_DATA => {
                Some((p, hex(&body)))
            }
            _ => None,
        })
        .collect();
    let copy = |base: &str| format!("2003046368617400000000000000070000000000000002{base}000000000000000301000000026869");
    assert_eq!(copies, vec![("b".into(), copy("0000000000000001")), ("c".into(), copy("0000000000000002"))]);
}

// ----- bounds (issue #16) ----------------------------------------------------

fn connects(out: &[Output]) -> Vec<String> {
    out.iter()
        .filter_map(|o| match o {
            Output::Rtc(RtcCommand::Connect { peer }) => Some(peer.clone()),
            _ => None,
        })
        .collect()
}

/// 300 signed RTC requests from fresh ids take at most `max_rtc`
/// PeerConnections; a real peer (announced, a replication partner) asking
/// afterwards still gets one, by taking a flood id's slot; repeats are shed.
#[test]
fn rtc_requests_from_a_flood_are_capped_and_a_real_peer_still_connects() {
    let mut r = router("a");
    r.handle_broker(true, 0);
    let max = r.config().max_rtc;
    let mut opened = 0;
    for i in 0..300 {
        r.handle_received(Route::Broker, &format!("fake-{i:03}"), Kind::RtcSignal, &[wire::SIGNAL_REQUEST], 10).unwrap();
        opened += connects(&drain(&mut r, 10)).len();
    }
    assert_eq!(opened, max, "one PeerConnection per slot, not one per requester");
    let s = r.stats().counters;
    assert_eq!(s.rtc_shed, 300 - max as u64);
    // The same fake again within the rate limit: shed, even with a slot.
    r.handle_received(Route::Broker, "fake-000", Kind::RtcSignal, &[wire::SIGNAL_REQUEST], 20).unwrap();
    assert!(connects(&drain(&mut r, 20)).is_empty());
    assert_eq!(r.stats().counters.rtc_shed, 300 - max as u64 + 1);

    // The real peer announced itself and we replicate to it.
    r.add_peer("pos-real", true, 30);
    r.touch("pos-real", 30);
    r.handle_received(Route::Broker, "pos-real", Kind::RtcSignal, &[wire::SIGNAL_REQUEST], 40).unwrap();
    let out = drain(&mut r, 40);
    assert_eq!(connects(&out), vec!["pos-real".to_string()], "the real peer gets a slot");
    assert!(out.iter().any(|o| matches!(o, Output::Rtc(RtcCommand::Close { peer }) if peer.starts_with("fake-"))), "a flood id gave it up");
    assert_eq!(r.stats().counters.rtc_evicted, 1);
    r.handle_route("pos-real", Route::Rtc, true, 50);
    assert_eq!(r.route_to("pos-real"), Some(Route::Rtc));
}

/// Offers from a flood of smaller ids: each answered offer is a
/// PeerConnection in the shell, so only `max_rtc` are passed on, and an
/// answered one that never opens is closed after the connect timeout.
#[test]
fn rtc_offers_from_a_flood_are_capped_and_time_out() {
    let mut r = router("zz-me");
    r.handle_broker(true, 0);
    let max = r.config().max_rtc;
    let mut passed = 0;
    for i in 0..300 {
        let offer = wire::Signal::Offer { session: i, sdp: "v=0".into() }.encode().unwrap();
        r.handle_received(Route::Broker, &format!("fake-{i:03}"), Kind::RtcSignal, &offer, 10).unwrap();
        passed += drain(&mut r, 10).iter().filter(|o| matches!(o, Output::Rtc(RtcCommand::Signal { .. }))).count();
    }
    assert_eq!(passed, max);
    // Candidates and answers for connections we do not hold are not passed on.
    let cand = wire::Signal::Candidate { session: 299, candidate: "c".into(), mid: None, mline: None }.encode().unwrap();
    r.handle_received(Route::Broker, "fake-299", Kind::RtcSignal, &cand, 11).unwrap();
    assert!(!drain(&mut r, 11).iter().any(|o| matches!(o, Output::Rtc(_))));
    let timeout = r.config().rtc_connect_timeout_ms;
    r.handle_timeout(10 + timeout);
    let closed = drain(&mut r, 10 + timeout).iter().filter(|o| matches!(o, Output::Rtc(RtcCommand::Close { .. }))).count();
    assert_eq!(closed, max, "negotiations that never opened give their PeerConnection back");
}

/// 2,000 senders: the peer table stays at `max_peers`, evicting the least
/// recently heard rows that hold nothing; the pinned hub and a peer with a
/// copy pending are kept.
#[test]
fn the_peer_table_is_bounded_and_keeps_the_hub_and_busy_peers() {
    let mut r = router("a");
    r.handle_broker(true, 0);
    let max = r.config().max_peers;
    r.add_peer("hub-1", true, 0);
    r.pin(&["hub-1"]);
    r.send(Dest::Peer("pos-2".into()), 1, b"x".to_vec(), 0).unwrap();
    drain(&mut r, 0);
    for i in 0..2_000u64 {
        let t = 1 + i;
        r.handle_received(Route::Broker, &format!("fake-{i:04}"), Kind::Probe, &wire::encode_probe(i), t).unwrap();
        drain(&mut r, t);
    }
    let s = r.stats();
    assert_eq!(s.peers.len(), max);
    assert!(s.peers.iter().any(|p| p.peer == "hub-1"), "the hub is never evicted");
    assert!(s.peers.iter().any(|p| p.peer == "pos-2"), "a peer with a copy pending is kept");
    assert!(s.peers.iter().any(|p| p.peer == "fake-1999"), "the newest sender has a row");
    assert!(!s.peers.iter().any(|p| p.peer == "fake-0000"), "the least recently heard went first");
    assert_eq!(s.counters.peers_evicted, 2_000 + 2 - max as u64);
}

/// With every slot held by flood ids, our own offer to a real peer (one we
/// talk to) takes a flood id's slot instead of waiting forever.
#[test]
fn our_own_offer_to_a_real_peer_takes_a_flood_ids_slot() {
    let mut r = router("a");
    r.handle_broker(true, 0);
    for i in 0..100 {
        r.handle_received(Route::Broker, &format!("fake-{i:03}"), Kind::RtcSignal, &[wire::SIGNAL_REQUEST], 10).unwrap();
    }
    drain(&mut r, 10);
    r.add_peer("pos-real", true, 20);
    r.send(Dest::Peer("pos-real".into()), 1, b"x".to_vec(), 20).unwrap();
    let out = drain(&mut r, 20);
    assert!(connects(&out).contains(&"pos-real".to_string()), "{out:?}");
    assert_eq!(r.stats().counters.rtc_evicted, 1);
}
