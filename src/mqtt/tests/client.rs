//! `Client` against the in-memory broker, on a virtual clock. Times in the
//! asserts are exact virtual instants, never wall time: the harness delivers
//! client bytes to the broker at once and broker bytes (and socket events)
//! to the client 10 ms later, so a round trip is 10 ms.

use super::broker::{Harness, Mode, CLOUD, LOCAL};
use crate::mqtt::packet::*;
use crate::mqtt::*;

fn cfg() -> SessionConfig {
    let mut c = SessionConfig::new("vm-v1-pos1-a");
    c.keep_alive_secs = 10;
    c.username = Some("venue1".into());
    c.password = Some(b"secret".to_vec());
    c.will = Some(Will { topic: "vm/v1/presence/pos1".into(), payload: vec![], qos: QoS::AtLeastOnce, retain: true });
    c
}

fn connected_with(c: SessionConfig) -> Harness {
    let mut h = Harness::new(c);
    h.run_for(100);
    assert!(h.client.stats().connected, "{:?}", h.events);
    h.take_events();
    h
}

fn connected() -> Harness {
    connected_with(cfg())
}

fn messages(h: &Harness) -> Vec<(String, Vec<u8>, QoS, bool)> {
    h.events()
        .filter_map(|e| match e {
            Event::Message { topic, payload, qos, retain, .. } => Some((topic.clone(), payload.clone(), *qos, *retain)),
            _ => None,
        })
        .collect()
}

fn done(h: &Harness) -> Vec<PublishId> {
    h.events().filter_map(|e| if let Event::PublishDone { id } = e { Some(*id) } else { None }).collect()
}

fn publishes_on(h: &Harness, sid: SocketId) -> Vec<Publish> {
    h.received
        .iter()
        .filter(|(_, s, _)| *s == sid)
        .filter_map(|(_, _, p)| if let Packet::Publish(p) = p { Some(p.clone()) } else { None })
        .collect()
}

#[test]
fn connect_sends_the_configured_connect() {
    let mut h = Harness::new(cfg());
    h.run_for(100);
    assert_eq!(h.opened.len(), 1);
    assert_eq!(h.opened[0].2, LOCAL);
    let connects = h.received_where(|p| matches!(p, Packet::Connect(_)));
    let Packet::Connect(c) = &connects[0].2 else { unreachable!() };
    assert_eq!(connects[0].0, 10, "CONNECT right after open");
    assert_eq!(c.client_id, "vm-v1-pos1-a");
    assert!(c.clean_session);
    assert_eq!(c.keep_alive, 10);
    assert_eq!(c.username.as_deref(), Some("venue1"));
    assert_eq!(c.password.as_deref(), Some(&b"secret"[..]));
    assert_eq!(c.will.as_ref().map(|w| (w.topic.as_str(), w.qos, w.retain)), Some(("vm/v1/presence/pos1", QoS::AtLeastOnce, true)));
    assert_eq!(
        h.events,
        vec![(20, Event::Connected { endpoint: 0, url: LOCAL.into(), session_present: false })]
    );
    let s = h.client.stats();
    assert_eq!((s.connected, s.endpoint, s.url.as_deref(), s.connects, s.reconnects), (true, Some(0), Some(LOCAL), 1, 0));
}

#[test]
fn publish_qos_0_1_2_round_trips() {
    for chunk in [None, Some(1), Some(3)] {
        let mut h = connected();
        h.chunk = chunk; // broker→client bytes split, even inside varints
        h.client.subscribe("t/#", QoS::ExactlyOnce, h.now).expect("valid");
        h.run_for(100);
        assert_eq!(h.take_events(), vec![Event::Subscribed { filter: "t/#".into(), granted: Some(QoS::ExactlyOnce) }]);
        let now = h.now;
        let ids = [
            h.client.publish("t/0", b"zero", QoS::AtMostOnce, false, now).expect("ok"),
            h.client.publish("t/1", b"one", QoS::AtLeastOnce, false, now).expect("ok"),
            h.client.publish("t/2", &[7u8; 300], QoS::ExactlyOnce, false, now).expect("ok"),
        ];
        h.run_for(200);
        assert_eq!(
            messages(&h),
            vec![
                ("t/0".into(), b"zero".to_vec(), QoS::AtMostOnce, false),
                ("t/1".into(), b"one".to_vec(), QoS::AtLeastOnce, false),
                ("t/2".into(), vec![7u8; 300], QoS::ExactlyOnce, false),
            ],
            "chunk {chunk:?}"
        );
        let mut d = done(&h);
        d.sort();
        assert_eq!(d, ids.to_vec());
        // The client acked what it received: PUBACK, PUBREC then PUBCOMP.
        assert_eq!(h.received_where(|p| matches!(p, Packet::PubAck(_))).len(), 1);
        assert_eq!(h.received_where(|p| matches!(p, Packet::PubRec(_))).len(), 1);
        assert_eq!(h.received_where(|p| matches!(p, Packet::PubComp(_))).len(), 1);
        assert_eq!(h.received_where(|p| matches!(p, Packet::PubRel(_))).len(), 1, "sender side QoS 2");
        let s = h.client.stats();
        assert_eq!((s.inflight, s.queued), (0, 0));
    }
}

#[test]
fn wildcard_subscriptions() {
    let mut h = connected();
    h.client.subscribe("a/+/c", QoS::AtLeastOnce, h.now).expect("ok");
    h.client.subscribe("b/#", QoS::AtMostOnce, h.now).expect("ok");
    h.run_for(100);
    for t in ["a/x/c", "a/x/d", "b", "b/y/z", "c", "a/x/c/d"] {
        h.client.publish(t, t.as_bytes(), QoS::AtLeastOnce, false, h.now).expect("ok");
    }
    h.run_for(100);
    let topics: Vec<(String, QoS)> = messages(&h).into_iter().map(|m| (m.0, m.2)).collect();
    assert_eq!(
        topics,
        vec![("a/x/c".into(), QoS::AtLeastOnce), ("b".into(), QoS::AtMostOnce), ("b/y/z".into(), QoS::AtMostOnce)]
    );
}

#[test]
fn retained_flag_passes_through() {
    let mut h = connected();
    h.client.publish("r/1", b"keep", QoS::AtLeastOnce, true, h.now).expect("ok");
    h.run_for(100);
    let sent = h.received_where(|p| matches!(p, Packet::Publish(_)));
    assert!(matches!(&sent[0].2, Packet::Publish(p) if p.retain && p.topic == "r/1"));
    h.client.subscribe("r/#", QoS::AtLeastOnce, h.now).expect("ok");
    h.run_for(100);
    assert_eq!(messages(&h), vec![("r/1".into(), b"keep".to_vec(), QoS::AtLeastOnce, true)]);
}

#[test]
fn keepalive_pings_when_idle_and_measures_rtt() {
    let mut h = connected(); // CONNECT sent at 10, keepalive 10 s
    h.run_until(35_000);
    let pings: Vec<u64> = h.received_where(|p| *p == Packet::PingReq).iter().map(|x| x.0).collect();
    assert_eq!(pings, vec![10_010, 20_010, 30_010]);
    // Sending alone does not postpone it: nothing came back since the
    // PINGRESP at 30_020, so the link is checked 10 s after that (#17).
    h.client.publish("x", b"", QoS::AtMostOnce, false, h.now).expect("ok");
    h.run_until(46_000);
    let pings: Vec<u64> = h.received_where(|p| *p == Packet::PingReq).iter().map(|x| x.0).collect();
    assert_eq!(pings, vec![10_010, 20_010, 30_010, 40_020]);
    // Traffic both ways postpones it: subscribed to our own topic, the
    // publish at 50_000 comes back at 50_020, so the next PINGREQ is at 60_000.
    h.client.subscribe("x", QoS::AtMostOnce, h.now).expect("ok");
    h.run_until(50_000);
    h.client.publish("x", b"", QoS::AtMostOnce, false, h.now).expect("ok");
    h.run_until(61_000);
    let pings: Vec<u64> = h.received_where(|p| *p == Packet::PingReq).iter().map(|x| x.0).collect();
    assert_eq!(pings, vec![10_010, 20_010, 30_010, 40_020, 60_000]);
    let rtt = h.client.stats().rtt;
    assert_eq!(rtt.smoothed_ms, Some(10.0), "the harness's round trip is its latency");
    assert_eq!((rtt.samples, rtt.min_ms, rtt.timeouts), (5, Some(10), 0));
    assert!(!h.events().any(|e| matches!(e, Event::Disconnected { .. })));
}

#[test]
fn zombie_socket_is_detected_and_replaced() {
    let mut h = connected();
    let first = h.socket_to(LOCAL).expect("socket");
    h.run_until(1_000);
    h.set_mode(LOCAL, Mode::Silent); // OPEN but nothing comes back (iOS)
    h.run_until(15_009);
    assert!(h.client.stats().connected, "still waiting for PINGRESP");
    h.run_until(15_010); // PINGREQ at 10_010 + 5 s ping timeout
    assert_eq!(h.events[0], (15_010, Event::Disconnected { reason: DisconnectReason::KeepaliveTimeout }));
    assert!(h.closed.contains(&(15_010, first)));
    // Reconnect: local still silent → CONNACK timeout → cloud.
    h.run_until(30_000);
    let s = h.client.stats();
    assert_eq!((s.connected, s.endpoint, s.reconnects), (true, Some(1), 1));
    assert!(s.rtt.timeouts >= 2, "keepalive + connect timeouts: {}", s.rtt.timeouts);
    assert!(h.events().any(|e| matches!(e, Event::ConnectFailed { endpoint: 0, reason: DisconnectReason::ConnectTimeout, .. })));
}

#[test]
fn wake_pings_at_once_with_a_short_deadline() {
    let mut h = connected();
    h.run_until(3_000);
    h.set_mode(LOCAL, Mode::Silent);
    h.input(Input::Wake);
    let pings: Vec<u64> = h.received_where(|p| *p == Packet::PingReq).iter().map(|x| x.0).collect();
    assert_eq!(pings, vec![3_000]);
    h.run_until(6_000);
    assert_eq!(h.events[0], (6_000, Event::Disconnected { reason: DisconnectReason::KeepaliveTimeout }));
}

#[test]
fn persistent_session_resends_unacked_with_dup_in_order() {
    let mut c = cfg();
    c.clean_session = false;
    let mut h = connected_with(c);
    let s1 = h.socket_to(LOCAL).expect("socket");
    // x: QoS 2 stuck after PUBREC (PUBREL stage).
    h.no_pubcomp.insert(LOCAL.into());
    let x = h.client.publish("q/x", b"x", QoS::ExactlyOnce, false, h.now).expect("ok");
    h.run_for(100);
    // a, b: never acknowledged.
    h.set_mode(LOCAL, Mode::Silent);
    let a = h.client.publish("q/a", b"a", QoS::AtLeastOnce, false, h.now).expect("ok");
    let b = h.client.publish("q/b", b"b", QoS::ExactlyOnce, false, h.now).expect("ok");
    h.run_for(100);
    assert_eq!(h.client.stats().inflight, 3);
    let first: Vec<Publish> = publishes_on(&h, s1);
    assert_eq!(first.len(), 3);
    h.kill(LOCAL);
    h.run_for(5);
    h.set_mode(LOCAL, Mode::Up);
    h.no_pubcomp.clear();
    h.run_for(2_000);
    assert!(h.events().any(|e| *e == Event::Disconnected { reason: DisconnectReason::SocketClosed }));
    assert!(h.events().any(|e| matches!(e, Event::Connected { endpoint: 0, session_present: true, .. })));
    let s2 = h.socket_to(LOCAL).expect("new socket");
    assert_ne!(s1, s2);
    let resent: Vec<Packet> = h.received.iter().filter(|(_, s, _)| *s == s2).map(|(_, _, p)| p.clone()).skip(1).take(3).collect();
    let (pid_x, pid_a, pid_b) = (first[0].packet_id, first[1].packet_id, first[2].packet_id);
    assert_eq!(resent[0], Packet::PubRel(pid_x));
    assert!(matches!(&resent[1], Packet::Publish(p) if p.dup && p.packet_id == pid_a && p.topic == "q/a"));
    assert!(matches!(&resent[2], Packet::Publish(p) if p.dup && p.packet_id == pid_b && p.topic == "q/b"));
    assert_eq!(done(&h), vec![x, a, b], "each completes exactly once");
    let s = h.client.stats();
    assert_eq!((s.inflight, s.queued, s.resent), (0, 0, 3));
}

#[test]
fn clean_session_reconnect_resubscribes_and_republishes() {
    let mut h = connected();
    h.client.subscribe("t/#", QoS::AtLeastOnce, h.now).expect("ok");
    h.run_for(100);
    h.set_mode(LOCAL, Mode::Silent);
    let a = h.client.publish("t/a", b"a", QoS::AtLeastOnce, false, h.now).expect("ok");
    let b = h.client.publish("t/b", b"b", QoS::ExactlyOnce, false, h.now).expect("ok");
    h.run_for(100);
    h.kill(LOCAL);
    h.run_for(5);
    h.set_mode(LOCAL, Mode::Up);
    h.run_for(2_000);
    let s2 = h.socket_to(LOCAL).expect("new socket");
    let after: Vec<Packet> = h.received.iter().filter(|(_, s, _)| *s == s2).map(|(_, _, p)| p.clone()).collect();
    assert!(matches!(&after[0], Packet::Connect(c) if c.clean_session));
    assert!(matches!(&after[1], Packet::Subscribe(s) if s.filters == vec![("t/#".to_string(), QoS::AtLeastOnce)]));
    assert!(matches!(&after[2], Packet::Publish(p) if !p.dup && p.topic == "t/a"));
    assert!(matches!(&after[3], Packet::Publish(p) if !p.dup && p.topic == "t/b"));
    assert_eq!(done(&h), vec![a, b]);
    let got: Vec<String> = messages(&h).into_iter().map(|m| m.0).collect();
    assert_eq!(got, vec!["t/a", "t/b"], "nothing lost");
    assert_eq!(
        h.events().filter(|e| matches!(e, Event::Subscribed { .. })).count(),
        2,
        "Subscribed again after the reconnect"
    );
}

#[test]
fn qos2_receive_is_exactly_once() {
    let mut c = cfg();
    c.clean_session = false;
    let mut h = connected_with(c);
    let sid = h.socket_to(LOCAL).expect("socket");
    let p = |dup| Packet::Publish(Publish { dup, qos: QoS::ExactlyOnce, retain: false, topic: "e/1".into(), packet_id: 7, payload: b"once".to_vec() });
    // A duplicate in the same frame, before the PUBREL could come.
    h.inject(sid, &[p(false), p(true)]);
    h.run_for(100);
    assert_eq!(messages(&h).len(), 1);
    assert_eq!(h.received_where(|x| *x == Packet::PubRec(7)).len(), 2, "PUBREC for each copy");
    assert_eq!(h.received_where(|x| *x == Packet::PubComp(7)).len(), 2);
    // After PUBCOMP the id is free: a new message with id 7 is new.
    h.inject(sid, &[p(false)]);
    h.run_for(100);
    assert_eq!(messages(&h).len(), 2);
    // PUBREC lost, broker resends after reconnect with the session: no duplicate.
    h.set_mode(LOCAL, Mode::Silent);
    let q = |dup| Packet::Publish(Publish { dup, qos: QoS::ExactlyOnce, retain: false, topic: "e/1".into(), packet_id: 9, payload: b"x".to_vec() });
    h.inject(sid, &[q(false)]);
    h.run_for(100);
    assert_eq!(messages(&h).len(), 3);
    h.kill(LOCAL);
    h.run_for(5);
    h.set_mode(LOCAL, Mode::Up);
    h.run_for(2_000);
    let s2 = h.socket_to(LOCAL).expect("socket");
    assert!(h.events().any(|e| matches!(e, Event::Connected { session_present: true, .. })));
    h.inject(s2, &[q(true)]);
    h.run_for(100);
    assert_eq!(messages(&h).len(), 3, "the DUP after reconnect is not delivered again");
    assert!(h.received.iter().any(|(_, s, p)| *s == s2 && *p == Packet::PubRec(9)));
}

#[test]
fn failover_to_second_endpoint_after_2s() {
    let mut h = Harness::new(cfg());
    h.set_mode(LOCAL, Mode::Down);
    h.run_for(3_000);
    let opened: Vec<(u64, String)> = h.opened.iter().map(|(t, _, u)| (*t, u.clone())).collect();
    assert_eq!(opened, vec![(0, LOCAL.into()), (2_000, CLOUD.into())]);
    assert!(h.closed.contains(&(2_000, h.opened[0].1)), "abandoned socket closed");
    assert_eq!(
        h.events,
        vec![
            (2_000, Event::ConnectFailed { endpoint: 0, url: LOCAL.into(), reason: DisconnectReason::ConnectTimeout }),
            (2_020, Event::Connected { endpoint: 1, url: CLOUD.into(), session_present: false }),
        ]
    );
    // A late `open` of the abandoned socket and its data are ignored.
    let stale = h.opened[0].1;
    h.input(Input::SocketOpened(stale));
    h.input(Input::SocketData(stale, vec![0x30, 3, 0, 1, b't']));
    h.input(Input::SocketClosed(stale));
    assert!(h.client.stats().connected);
    assert_eq!(h.events.len(), 2);
}

#[test]
fn switches_back_after_a_successful_probe() {
    let mut h = Harness::new(cfg());
    h.set_mode(LOCAL, Mode::Down);
    h.client.subscribe("t/#", QoS::AtLeastOnce, 0).expect("ok");
    h.run_until(40_000);
    // First probe at 2_020 + 30 s fails (still down), after its 2 s timeout.
    let probes: Vec<u64> = h.opened.iter().filter(|(_, _, u)| u == LOCAL).map(|(t, _, _)| *t).collect();
    assert_eq!(probes, vec![0, 32_020]);
    assert_eq!(h.client.stats().probes_failed, 1);
    h.set_mode(LOCAL, Mode::Up);
    h.run_until(64_019);
    assert_eq!(h.client.stats().endpoint, Some(1));
    h.run_until(64_200);
    let cloud = h.opened[1].1;
    assert!(h.received.iter().any(|(_, s, p)| *s == cloud && *p == Packet::Disconnect), "clean leave from the cloud");
    let probe_connect = h.received.iter().find(|(t, _, p)| *t >= 64_000 && matches!(p, Packet::Connect(_)));
    assert!(matches!(probe_connect, Some((_, _, Packet::Connect(c))) if c.client_id.is_empty() && c.will.is_none()));
    let tail: Vec<&Event> = h.events().skip_while(|e| !matches!(e, Event::Disconnected { .. })).collect();
    assert_eq!(tail[0], &Event::Disconnected { reason: DisconnectReason::SwitchingEndpoint });
    assert!(matches!(tail[1], Event::Connected { endpoint: 0, .. }));
    let s = h.client.stats();
    assert_eq!((s.endpoint, s.probes_ok, s.subscriptions), (Some(0), 1, 1));
    // Subscriptions followed us to the local broker.
    let local = h.socket_to(LOCAL).expect("socket");
    assert!(h.received.iter().any(|(_, s, p)| *s == local && matches!(p, Packet::Subscribe(_))));
}

#[test]
fn backoff_grows_with_jitter_and_resets_on_wake_and_success() {
    let eps = vec![EndpointConfig::new(LOCAL, 1_000)];
    let mut h = Harness::with(eps, cfg(), BackoffConfig::default(), 11);
    h.set_mode(LOCAL, Mode::Down);
    h.run_until(200_000);
    let starts: Vec<u64> = h.opened.iter().map(|(t, _, _)| *t).collect();
    assert!(starts.len() > 8);
    // Each attempt fails at start + 1 s; the gap to the next is the backoff.
    let gaps: Vec<u64> = starts.windows(2).map(|w| w[1] - (w[0] + 1_000)).collect();
    let cfgb = BackoffConfig::default();
    for (n, g) in gaps.iter().enumerate() {
        assert!(*g <= cfgb.ceiling(n as u32), "gap {n} = {g}");
    }
    assert!(gaps.iter().any(|g| *g > 500), "backoff grew past the base: {gaps:?}");
    assert!(gaps.windows(2).any(|w| w[0] != w[1]), "jittered");
    // Wake: reconnect at once, backoff reset.
    let before = h.opened.len();
    let at_wake = h.now;
    h.input(Input::Wake);
    assert_eq!(h.opened.len(), before + 1);
    assert_eq!(h.opened[before].0, at_wake);
    assert_eq!(h.client.stats().backoff_failures, 0);
    // Success and a long-lived connection: the next delay is within the base.
    h.set_mode(LOCAL, Mode::Up);
    h.run_for(60_000);
    assert!(h.client.stats().connected);
    h.kill(LOCAL);
    let killed = h.now;
    h.run_for(2_000);
    let next = h.opened.last().expect("reopened").0;
    assert!(next - (killed + 10) <= 500, "reconnected {} ms after the loss", next - killed);
    assert!(h.client.stats().connected);
}

#[test]
fn hundred_publishes_in_one_turn_are_one_send() {
    let mut h = connected();
    let before = h.sends.len();
    for i in 0..100 {
        let qos = [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce][i % 3];
        h.client.publish("bulk", &[i as u8; 20], qos, false, h.now).expect("ok");
    }
    h.drain();
    assert_eq!(&h.sends[before..], &[(h.now, h.socket_to(LOCAL).expect("s"), 100)]);
    h.run_for(100);
    assert_eq!(done(&h).len(), 100);
}

#[test]
fn inflight_window_queues_the_rest_in_order() {
    let mut c = cfg();
    c.max_inflight = 5;
    let mut h = connected_with(c);
    let before = h.sends.len();
    for i in 0..12u8 {
        h.client.publish("w", &[i], QoS::AtLeastOnce, false, h.now).expect("ok");
    }
    let s = h.client.stats();
    assert_eq!((s.inflight, s.queued), (5, 7));
    h.run_for(200);
    let counts: Vec<usize> = h.sends[before..].iter().map(|s| s.2).collect();
    assert_eq!(counts, vec![5, 5, 2]);
    let order: Vec<u8> = publishes_on(&h, h.socket_to(LOCAL).expect("s")).iter().map(|p| p.payload[0]).collect();
    assert_eq!(order, (0..12).collect::<Vec<u8>>());
    assert_eq!(done(&h).len(), 12);
}

#[test]
fn refused_connack_fails_over_with_the_code() {
    let mut h = Harness::new(cfg());
    h.set_mode(LOCAL, Mode::Refuse(ConnectReturnCode::NotAuthorized));
    h.run_for(200);
    let refused = DisconnectReason::Refused(ConnectReturnCode::NotAuthorized);
    assert_eq!(h.events[0], (20, Event::ConnectFailed { endpoint: 0, url: LOCAL.into(), reason: refused }));
    assert!(h.closed.iter().any(|(t, id)| *t == 20 && *id == h.opened[0].1));
    assert!(matches!(h.events[1], (40, Event::Connected { endpoint: 1, .. })), "{:?}", h.events);
}

#[test]
fn publishes_while_disconnected_wait_and_queue_is_bounded() {
    let mut c = cfg();
    c.max_queued = 3;
    let mut h = Harness::new(c);
    h.client.subscribe("d/#", QoS::AtLeastOnce, 0).expect("ok");
    let ids: Vec<PublishId> = (0..3u8)
        .map(|i| h.client.publish("d/x", &[i], [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce][i as usize], false, 0).expect("ok"))
        .collect();
    assert_eq!(h.client.publish("d/x", b"no", QoS::AtMostOnce, false, 0), Err(UsageError::QueueFull { limit: 3 }));
    assert_eq!(h.client.stats().queued, 3);
    h.run_for(200);
    assert_eq!(done(&h), ids);
    assert_eq!(messages(&h).iter().map(|m| m.1[0]).collect::<Vec<u8>>(), vec![0, 1, 2]);
}

#[test]
fn subscribe_failure_and_unsubscribe() {
    let mut h = connected();
    h.client.subscribe("forbidden/x", QoS::AtLeastOnce, h.now).expect("ok");
    h.client.subscribe("t/#", QoS::AtLeastOnce, h.now).expect("ok");
    h.run_for(100);
    assert_eq!(
        h.take_events(),
        vec![
            Event::Subscribed { filter: "forbidden/x".into(), granted: None },
            Event::Subscribed { filter: "t/#".into(), granted: Some(QoS::AtLeastOnce) },
        ]
    );
    assert_eq!(h.client.stats().subscriptions, 1);
    h.client.unsubscribe("t/#", h.now).expect("ok");
    h.run_for(100);
    assert_eq!(h.take_events(), vec![Event::Unsubscribed { filter: "t/#".into() }]);
    h.client.publish("t/1", b"", QoS::AtLeastOnce, false, h.now).expect("ok");
    h.run_for(100);
    assert!(messages(&h).is_empty());
    assert_eq!(h.client.stats().subscriptions, 0);
}

#[test]
fn usage_errors_are_not_protocol_errors() {
    let mut c = cfg();
    c.max_packet_size = 1024;
    let mut h = connected_with(c);
    let now = h.now;
    assert_eq!(h.client.publish("a/+", b"", QoS::AtMostOnce, false, now), Err(UsageError::InvalidTopic(TopicError::WildcardInName)));
    assert_eq!(h.client.publish("", b"", QoS::AtMostOnce, false, now), Err(UsageError::InvalidTopic(TopicError::Empty)));
    assert!(matches!(h.client.publish("a", &[0; 2000], QoS::AtMostOnce, false, now), Err(UsageError::PacketTooLarge { max: 1024, .. })));
    assert_eq!(h.client.subscribe("a#", QoS::AtMostOnce, now), Err(UsageError::InvalidFilter(TopicError::InvalidMultiLevelWildcard)));
    assert_eq!(h.client.unsubscribe("a/+b", now), Err(UsageError::InvalidFilter(TopicError::InvalidSingleLevelWildcard)));
    assert!(h.client.stats().connected, "misuse does not touch the connection");
}

#[test]
fn broker_protocol_errors_drop_the_connection() {
    let mut h = connected();
    let sid = h.socket_to(LOCAL).expect("s");
    h.inject(sid, &[Packet::ConnAck(ConnAck { session_present: false, code: ConnectReturnCode::Accepted })]);
    h.run_for(15);
    assert_eq!(h.events[0].1, Event::Disconnected { reason: DisconnectReason::Protocol(ProtocolError::UnexpectedPacket("CONNACK")) });
    h.run_for(2_000);
    assert!(h.client.stats().connected);
    let sid = h.socket_to(LOCAL).expect("s");
    h.take_events();
    h.input(Input::SocketData(sid, vec![0xF0, 0]));
    assert_eq!(
        h.take_events()[0],
        Event::Disconnected { reason: DisconnectReason::Protocol(ProtocolError::Decode(DecodeError::InvalidPacketType(15))) }
    );
}

#[test]
fn close_disconnects_fails_pending_and_stops() {
    let mut h = connected();
    h.set_mode(LOCAL, Mode::Silent);
    let a = h.client.publish("c", b"a", QoS::AtLeastOnce, false, h.now).expect("ok");
    let b = h.client.publish("c", b"b", QoS::ExactlyOnce, false, h.now).expect("ok");
    h.run_for(50);
    h.take_events();
    let sid = h.socket_to(LOCAL).expect("s");
    h.client.close(h.now);
    h.drain();
    assert_eq!(h.received.last().map(|r| (r.1, r.2.clone())), Some((sid, Packet::Disconnect)));
    assert!(h.closed.iter().any(|(_, id)| *id == sid));
    assert_eq!(
        h.take_events(),
        vec![
            Event::Disconnected { reason: DisconnectReason::Closed },
            Event::PublishFailed { id: a, error: PublishError::Closed },
            Event::PublishFailed { id: b, error: PublishError::Closed },
        ]
    );
    assert_eq!(h.client.poll_output(h.now), Output::Idle);
    assert_eq!(h.client.publish("c", b"", QoS::AtMostOnce, false, h.now), Err(UsageError::Closed));
    let opened = h.opened.len();
    h.input(Input::Wake);
    h.run_for(100_000);
    assert_eq!(h.opened.len(), opened, "no reconnect after close");
}

#[test]
fn config_errors() {
    let bad = |eps: Vec<EndpointConfig>, s: SessionConfig| {
        Client::new(ClientConfig::new(eps, s), crate::rng::Rng::new(1), 0).err()
    };
    let ep = || vec![EndpointConfig::new(LOCAL, 2_000)];
    assert_eq!(bad(vec![], cfg()), Some(ConfigError::NoEndpoints));
    assert_eq!(bad(vec![EndpointConfig::new("http://x", 1)], cfg()), Some(ConfigError::InvalidUrl { index: 0 }));
    let mut s = cfg();
    s.client_id.clear();
    s.clean_session = false;
    assert!(matches!(bad(ep(), s), Some(ConfigError::InvalidClientId(_))));
    let mut s = cfg();
    s.username = None;
    assert!(matches!(bad(ep(), s), Some(ConfigError::InvalidCredentials(_))));
    let mut s = cfg();
    s.will = Some(Will { topic: "a/#".into(), payload: vec![], qos: QoS::AtMostOnce, retain: false });
    assert_eq!(bad(ep(), s), Some(ConfigError::InvalidWill(TopicError::WildcardInName)));
    let mut s = cfg();
    s.max_inflight = 0;
    assert!(matches!(bad(ep(), s), Some(ConfigError::InvalidLimit(_))));
}
