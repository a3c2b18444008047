//! `Session` driven directly with raw packets.

use crate::mqtt::codec::{encode, Decoder};
use crate::mqtt::packet::*;
use crate::mqtt::session::{LostReason, Session, SessionConfig, SessionEvent, SessionState};
use crate::mqtt::{ProtocolError, UsageError};

fn bytes(packets: &[Packet]) -> Vec<u8> {
    let mut v = Vec::new();
    for p in packets {
        encode(p, &mut v).expect("valid");
    }
    v
}

fn sent(s: &mut Session) -> Vec<Packet> {
    let mut d = Decoder::default();
    if let Some(b) = s.poll_transmit() {
        d.feed(&b);
    }
    let mut out = Vec::new();
    while let Some(p) = d.next_packet().expect("valid stream") {
        out.push(p);
    }
    out
}

fn events(s: &mut Session) -> Vec<SessionEvent> {
    std::iter::from_fn(|| s.poll_event()).collect()
}

fn connack(present: bool) -> Packet {
    Packet::ConnAck(ConnAck { session_present: present, code: ConnectReturnCode::Accepted })
}

fn connected(keep_alive: u16) -> Session {
    let mut c = SessionConfig::new("s1");
    c.keep_alive_secs = keep_alive;
    let mut s = Session::new(c).expect("valid");
    s.connect(0, Some(2_000));
    assert!(matches!(sent(&mut s)[..], [Packet::Connect(_)]));
    s.handle_data(bytes(&[connack(false)]), 0);
    assert_eq!(events(&mut s), vec![SessionEvent::Connected { session_present: false }]);
    s
}

fn lost(s: &mut Session) -> Option<LostReason> {
    events(s).into_iter().find_map(|e| match e {
        SessionEvent::ConnectionLost { reason } => Some(reason),
        _ => None,
    })
}

#[test]
fn packet_ids_wrap_skip_zero_and_ids_in_use() {
    let mut s = connected(0);
    s.publish("a", vec![], QoS::AtLeastOnce, false, 0).expect("ok");
    s.set_next_packet_id(65_534);
    s.publish("a", vec![], QoS::AtLeastOnce, false, 0).expect("ok");
    s.publish("a", vec![], QoS::ExactlyOnce, false, 0).expect("ok");
    let sub = s.subscribe(&[("f", QoS::AtMostOnce)], 0).expect("ok");
    let ids: Vec<u16> = sent(&mut s)
        .iter()
        .map(|p| match p {
            Packet::Publish(p) => p.packet_id,
            Packet::Subscribe(s) => s.packet_id,
            _ => 0,
        })
        .collect();
    assert_eq!(ids, vec![1, 65_535, 2, 3], "0 skipped, 1 still in flight");
    assert_eq!(sub, 3);
}

#[test]
fn late_timer_gets_one_grace_period() {
    let mut s = connected(10);
    s.handle_timeout(10_000);
    assert_eq!(sent(&mut s), vec![Packet::PingReq]);
    assert_eq!(s.poll_timeout(), Some(15_000));
    // The page slept: our timer runs 45 s late. Not a failure yet.
    s.handle_timeout(60_000);
    assert_eq!(s.state(), SessionState::Connected);
    assert_eq!(s.poll_timeout(), Some(61_000));
    s.handle_data(bytes(&[Packet::PingResp]), 60_100);
    s.handle_timeout(61_000);
    assert_eq!(s.state(), SessionState::Connected);
    assert_eq!(s.rtt().latest_ms, Some(50_100));
    // Without an answer, the grace ends it.
    let mut s = connected(10);
    s.handle_timeout(10_000);
    s.handle_timeout(60_000);
    s.handle_timeout(61_000);
    assert_eq!(lost(&mut s), Some(LostReason::KeepaliveTimeout));
    assert_eq!(s.rtt().timeouts, 1);
}

#[test]
fn any_packet_extends_the_ping_deadline() {
    let mut s = connected(10);
    s.handle_timeout(10_000); // PINGREQ, deadline 15_000
    sent(&mut s);
    let p = Publish { dup: false, qos: QoS::AtMostOnce, retain: false, topic: "t".into(), packet_id: 0, payload: vec![] };
    s.handle_data(bytes(&[Packet::Publish(p)]), 14_000);
    assert_eq!(s.poll_timeout(), Some(19_000));
}

/// Issue #17: a link that accepts our sends but delivers nothing (blackholed,
/// offline emulation) is noticed while we keep publishing heartbeats: the
/// keepalive ping runs on receive silence too, and its deadline ends it.
#[test]
fn receive_silence_is_noticed_while_sending() {
    let mut s = connected(30);
    let hb = |s: &mut Session, at: u64| {
        s.publish("vm/v/hb/d", vec![1; 40], QoS::AtMostOnce, false, at).expect("ok");
        sent(s)
    };
    // Sending every second, receiving nothing: the ping is due 30 s after the
    // last receive (the CONNACK at 0), not 30 s after the last send.
    for t in (1_000..30_000).step_by(1_000) {
        hb(&mut s, t);
        s.handle_timeout(t);
    }
    assert_eq!(s.poll_timeout(), Some(30_000));
    s.handle_timeout(30_000);
    assert_eq!(sent(&mut s), vec![Packet::PingReq]);
    for t in (31_000..35_000).step_by(1_000) {
        hb(&mut s, t);
        s.handle_timeout(t);
        assert_eq!(s.state(), SessionState::Connected);
    }
    s.handle_timeout(35_000);
    assert_eq!(lost(&mut s), Some(LostReason::KeepaliveTimeout), "lost within keep_alive + ping timeout");

    // While the broker echoes our heartbeats (anything received), no ping is needed.
    let mut s = connected(30);
    for t in (1_000..90_000).step_by(1_000) {
        hb(&mut s, t);
        let echo = Publish { dup: false, qos: QoS::AtMostOnce, retain: false, topic: "vm/v/hb/d".into(), packet_id: 0, payload: vec![1; 40] };
        s.handle_data(bytes(&[Packet::Publish(echo)]), t);
        s.handle_timeout(t);
        assert_eq!(s.state(), SessionState::Connected);
    }
    events(&mut s);
    assert_eq!(s.poll_timeout(), Some(89_000 + 30_000));
}

#[test]
fn connect_timeout_and_packets_before_connack() {
    let mut s = Session::new(SessionConfig::new("s")).expect("valid");
    s.connect(0, Some(2_000));
    s.handle_timeout(1_999);
    assert_eq!(s.state(), SessionState::Connecting);
    s.handle_timeout(2_000);
    assert_eq!(lost(&mut s), Some(LostReason::ConnectTimeout));
    s.connect(3_000, None);
    s.handle_data(bytes(&[Packet::PubAck(1)]), 3_010);
    assert_eq!(lost(&mut s), Some(LostReason::Protocol(ProtocolError::UnexpectedPacket("PUBACK"))));
}

#[test]
fn refused_connack_is_an_event_with_the_code() {
    let mut s = Session::new(SessionConfig::new("s")).expect("valid");
    s.connect(0, None);
    let refuse = Packet::ConnAck(ConnAck { session_present: false, code: ConnectReturnCode::BadUsernameOrPassword });
    s.handle_data(bytes(&[refuse, Packet::PingResp]), 5);
    assert_eq!(
        events(&mut s),
        vec![SessionEvent::ConnectionRefused { code: ConnectReturnCode::BadUsernameOrPassword }]
    );
    assert_eq!(s.state(), SessionState::Disconnected);
}

#[test]
fn unknown_and_mismatched_acks_are_ignored() {
    let mut s = connected(0);
    s.publish("a", vec![], QoS::ExactlyOnce, false, 0).expect("ok"); // id 1
    sent(&mut s);
    let junk = [
        Packet::PubAck(1), // wrong kind for a QoS 2 message
        Packet::PubAck(999),
        Packet::PubRec(999),
        Packet::PubComp(1), // not released yet
        Packet::PubComp(999),
        Packet::SubAck(SubAck { packet_id: 5, return_codes: vec![Some(QoS::AtMostOnce)] }),
        Packet::UnsubAck(6),
    ];
    s.handle_data(bytes(&junk), 1);
    assert_eq!(events(&mut s), vec![]);
    assert_eq!((s.state(), s.inflight_len()), (SessionState::Connected, 1));
    // A duplicate PUBREC re-sends PUBREL.
    s.handle_data(bytes(&[Packet::PubRec(1), Packet::PubRec(1)]), 2);
    assert_eq!(sent(&mut s), vec![Packet::PubRel(1), Packet::PubRel(1)]);
    s.handle_data(bytes(&[Packet::PubComp(1)]), 3);
    assert!(matches!(events(&mut s)[..], [SessionEvent::PublishDone { .. }]));
}

#[test]
fn suback_with_wrong_count_is_a_protocol_error() {
    let mut s = connected(0);
    let id = s.subscribe(&[("a", QoS::AtMostOnce), ("b", QoS::AtMostOnce)], 0).expect("ok");
    s.handle_data(bytes(&[Packet::SubAck(SubAck { packet_id: id, return_codes: vec![None] })]), 1);
    assert_eq!(lost(&mut s), Some(LostReason::Protocol(ProtocolError::SubAckMismatch { requested: 2, returned: 1 })));
}

#[test]
fn resubscribe_then_pending_requests_in_order() {
    let mut s = connected(0);
    let id = s.subscribe(&[("a", QoS::AtLeastOnce), ("b", QoS::ExactlyOnce)], 0).expect("ok");
    sent(&mut s);
    let ack = SubAck { packet_id: id, return_codes: vec![Some(QoS::AtLeastOnce), Some(QoS::AtLeastOnce)] };
    s.handle_data(bytes(&[Packet::SubAck(ack)]), 1);
    events(&mut s);
    s.transport_closed();
    let unsub = s.unsubscribe(&["a"], 2).expect("ok");
    assert_eq!(sent(&mut s), vec![], "nothing sent while disconnected");
    s.connect(3, None);
    s.handle_data(bytes(&[connack(false)]), 4);
    let out = sent(&mut s);
    assert!(matches!(&out[0], Packet::Connect(_)));
    // Re-subscribed with the QoS we asked for, then the pending unsubscribe.
    assert!(matches!(&out[1], Packet::Subscribe(x) if x.filters == vec![("a".into(), QoS::AtLeastOnce), ("b".into(), QoS::ExactlyOnce)]));
    assert!(matches!(&out[2], Packet::Unsubscribe(x) if x.packet_id == unsub && x.filters == vec!["a".to_string()]));
    assert_eq!(out.len(), 3);
}

#[test]
fn closed_session_refuses_calls() {
    let mut s = connected(0);
    s.publish("a", vec![1], QoS::AtLeastOnce, false, 0).expect("ok");
    s.close(1);
    assert_eq!(sent(&mut s).last(), Some(&Packet::Disconnect));
    assert!(matches!(events(&mut s)[..], [SessionEvent::PublishFailed { .. }]));
    assert_eq!(s.publish("a", vec![], QoS::AtMostOnce, false, 2), Err(UsageError::Closed));
    assert_eq!(s.subscribe(&[("a", QoS::AtMostOnce)], 2), Err(UsageError::Closed));
    assert_eq!(s.subscribe(&[], 2), Err(UsageError::Closed));
    s.connect(3, None);
    assert_eq!(s.state(), SessionState::Closed);
    assert_eq!(s.poll_transmit(), None);
}

#[test]
fn empty_filter_list_is_a_usage_error() {
    let mut s = connected(0);
    assert_eq!(s.subscribe(&[], 0), Err(UsageError::NoFilters));
    assert_eq!(s.unsubscribe(&[], 0), Err(UsageError::NoFilters));
}

/// Issue #16: a huge message the broker feeds slowly reaches the page only
/// when whole, so the link is silent meanwhile. With `recv_silence_ms` the
/// ping runs after that silence, not after the (longer) keepalive: the stall
/// is noticed within `recv_silence_ms` + ping timeout while we keep sending.
#[test]
fn recv_silence_setting_shortens_the_receive_rule() {
    let mut c = SessionConfig::new("s1");
    c.keep_alive_secs = 30;
    c.recv_silence_ms = Some(7_500);
    let mut s = Session::new(c).expect("valid");
    s.connect(0, Some(2_000));
    sent(&mut s);
    s.handle_data(bytes(&[connack(false)]), 0);
    events(&mut s);
    for t in (1_000..7_500).step_by(1_000) {
        s.publish("vm/v/hb/d", vec![1; 40], QoS::AtMostOnce, false, t).expect("ok");
        sent(&mut s);
        s.handle_timeout(t);
    }
    assert_eq!(s.poll_timeout(), Some(7_500));
    s.handle_timeout(7_500);
    assert_eq!(sent(&mut s), vec![Packet::PingReq]);
    s.handle_timeout(12_500);
    assert_eq!(lost(&mut s), Some(LostReason::KeepaliveTimeout), "stall noticed in recv_silence + ping timeout");

    let mut bad = SessionConfig::new("s1");
    bad.recv_silence_ms = Some(0);
    assert!(Session::new(bad).is_err());
}

/// Issue #20: round trips of the start-up (the page still instantiating,
/// loading IndexedDB, taking the retained burst) do not seed the broker RTT;
/// with `measure_rtt_after_connect` one PINGREQ at the window's end gives
/// the first real sample, on every (re)connect.
#[test]
fn startup_round_trips_are_left_out_and_measured_after() {
    use crate::mqtt::timing::RTT_WARMUP_MS;
    let mut c = SessionConfig::new("s1");
    c.keep_alive_secs = 30;
    c.measure_rtt_after_connect = true;
    let mut s = Session::new(c).expect("valid");
    s.connect(0, Some(2_000));
    sent(&mut s);
    s.handle_data(bytes(&[connack(false)]), 100);
    events(&mut s);
    // A QoS 1 publish in the start-up window, acked 900 ms later (a busy page).
    s.publish("t", vec![1], QoS::AtLeastOnce, false, 200).expect("ok");
    let pid = sent(&mut s).into_iter().find_map(|p| match p { Packet::Publish(p) => Some(p.packet_id), _ => None }).expect("publish");
    s.handle_data(bytes(&[Packet::PubAck(pid)]), 1_100);
    let r = s.rtt();
    assert_eq!((r.smoothed_ms, r.samples, r.startup_samples), (None, 0, 1), "the start-up round trip is not a sample");
    // The measurement ping when the window ends.
    assert_eq!(s.poll_timeout(), Some(100 + RTT_WARMUP_MS));
    s.handle_timeout(100 + RTT_WARMUP_MS);
    assert_eq!(sent(&mut s), vec![Packet::PingReq]);
    s.handle_data(bytes(&[Packet::PingResp]), 100 + RTT_WARMUP_MS + 3);
    let r = s.rtt();
    assert_eq!((r.smoothed_ms, r.min_ms, r.samples, r.startup_samples), (Some(3.0), Some(3), 1, 1));
    // Two more, a second apart; the estimate starts from their minimum.
    let mut t = 100 + RTT_WARMUP_MS;
    for rtt in [40, 2] {
        t += 1_000;
        assert_eq!(s.poll_timeout(), Some(t));
        s.handle_timeout(t);
        assert_eq!(sent(&mut s), vec![Packet::PingReq]);
        s.handle_data(bytes(&[Packet::PingResp]), t + rtt);
    }
    let r = s.rtt();
    assert_eq!((r.smoothed_ms, r.min_ms, r.samples), (Some(2.0), Some(2), 3));
    // Then only the keepalive's.
    assert_eq!(s.poll_timeout(), Some(t + 30_000));
}
