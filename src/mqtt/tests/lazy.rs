//! `Client::handle_data_lazy`: frames of QoS 0 messages are fed without
//! reading the clock, and nothing the client does may change because of it.
//! Each scenario runs twice on the virtual clock, once with every frame fed
//! at its exact time and once as the web shell feeds it, and the two traces
//! (every packet the broker got and when, every event and when, the stats
//! with the RTT figures) must be the same.

use super::broker::{Harness, LOCAL};
use crate::mqtt::codec::encode;
use crate::mqtt::packet::*;
use crate::mqtt::*;

fn cfg() -> SessionConfig {
    let mut c = SessionConfig::new("vm-v1-sub1-a");
    c.keep_alive_secs = 10;
    c
}

fn connected(lazy: bool) -> Harness {
    let mut h = Harness::new(cfg());
    h.lazy = lazy;
    h.run_for(100);
    assert!(h.client.stats().connected);
    h.client.subscribe("s/#", QoS::AtLeastOnce, h.now).expect("ok");
    h.run_for(100);
    h
}

fn qos0(topic: &str, payload: &[u8]) -> Packet {
    Packet::Publish(Publish { dup: false, qos: QoS::AtMostOnce, retain: false, topic: topic.into(), packet_id: 0, payload: payload.to_vec() })
}

fn bytes(packets: &[Packet]) -> Vec<u8> {
    let mut out = Vec::new();
    for p in packets {
        encode(p, &mut out).expect("valid");
    }
    out
}

/// Everything observable: packets at the broker, events, stats.
fn trace(h: &Harness) -> String {
    format!("{:?}\n{:?}\n{:?}", h.received, h.events, h.client.stats())
}

/// A stream of QoS 0 messages (one or two per frame, 250 ms apart) for 40 s;
/// the client publishes QoS 1 in the first 10 s (PUBACK: RTT samples), then
/// only receives, and the keepalive pings every 10 s (PINGRESP: RTT samples;
/// frames that arrive while a ping is out).
fn stream(lazy: bool) -> Harness {
    let mut h = connected(lazy);
    let sid = h.socket_to(LOCAL).expect("socket");
    for k in 0..160u32 {
        let p = k.to_be_bytes();
        if k % 3 == 0 {
            h.inject(sid, &[qos0("s/a", &p), qos0("s/b", &p)]);
        } else {
            h.inject(sid, &[qos0("s/a", &p)]);
        }
        if k < 40 && k % 10 == 5 {
            h.client.publish("x", &p, QoS::AtLeastOnce, false, h.now).expect("ok");
        }
        h.run_for(250);
    }
    h
}

#[test]
fn a_stream_of_qos0_frames_is_fed_without_the_clock_and_changes_nothing() {
    let (exact, lazy) = (stream(false), stream(true));
    assert_eq!(trace(&exact), trace(&lazy));
    let pings = lazy.received_where(|p| *p == Packet::PingReq).len();
    assert!(pings >= 3, "the keepalive ran meanwhile: {pings} pings");
    let st = lazy.client.stats();
    assert!(st.rtt.samples >= 6, "PUBACKs and PINGRESPs sampled: {:?}", st.rtt);
    assert_eq!(st.rtt.min_ms, Some(10), "the harness's round trip");
    // The QoS 0 frames read no clock; the rest did (CONNACK, SUBACK, PUBACKs,
    // PINGRESPs, and frames that arrived while a ping was out).
    assert!(lazy.lazy_frames >= 160, "{} frames", lazy.lazy_frames);
    assert!(lazy.clock_reads <= 40, "{} of {} frames read the clock", lazy.clock_reads, lazy.lazy_frames);
}

/// QoS 0 frames, 5 s of silence (no clock read: the client's latest time is
/// 5 s old), then a PUBLISH whose topic is not a valid topic name: the frame
/// looks quiet by its header, the decoder refuses it, and the disconnect
/// and the reconnect backoff must run from the real time.
fn bad_publish_after_silence(lazy: bool) -> Harness {
    let mut h = connected(lazy);
    let sid = h.socket_to(LOCAL).expect("socket");
    h.inject(sid, &[qos0("s/a", b"1")]);
    h.run_for(5_000);
    h.inject_raw(sid, bytes(&[qos0("s/a", b"2")]).into_iter().chain(bytes(&[qos0("s/+", b"3")])).collect());
    h.run_for(5_000);
    h
}

#[test]
fn a_protocol_error_in_a_quiet_frame_runs_on_the_real_time() {
    let (exact, lazy) = (bad_publish_after_silence(false), bad_publish_after_silence(true));
    assert_eq!(trace(&exact), trace(&lazy));
    let lost = lazy.events.iter().find(|(_, e)| matches!(e, Event::Disconnected { .. })).expect("disconnected");
    assert_eq!(lost.0, 5_210, "at the frame's arrival, not at the last clock read");
    assert_eq!(lazy.client.stats().reconnects, 1);
}

#[test]
fn which_frames_read_the_clock() {
    let mut h = connected(true);
    let sid = h.socket_to(LOCAL).expect("socket");
    let reads = |h: &mut Harness, frame: Vec<u8>| {
        let before = h.clock_reads;
        h.inject_raw(sid, frame);
        h.run_for(20);
        h.clock_reads - before
    };
    assert_eq!(reads(&mut h, bytes(&[qos0("s/a", b"x")])), 0, "one QoS 0 PUBLISH");
    assert_eq!(reads(&mut h, bytes(&[qos0("s/a", b"x"), qos0("s/b", b"y")])), 0, "two");
    let mut retained = bytes(&[qos0("s/a", b"x")]);
    retained[0] |= 1;
    assert_eq!(reads(&mut h, retained), 0, "RETAIN set");
    let qos1 = Packet::Publish(Publish { dup: false, qos: QoS::AtLeastOnce, retain: false, topic: "s/a".into(), packet_id: 9, payload: vec![] });
    assert_eq!(reads(&mut h, bytes(&[qos1])), 1, "QoS 1 (a PUBACK goes out)");
    assert_eq!(reads(&mut h, bytes(&[qos0("s/a", b"x"), Packet::PingResp])), 1, "a PINGRESP behind it");
    let half = bytes(&[qos0("s/a", b"xyz")]);
    assert_eq!(reads(&mut h, half[..4].to_vec()), 1, "part of a packet");
    assert_eq!(reads(&mut h, half[4..].to_vec()), 1, "the rest of it");
    // A frame on its way, then a ping goes out: the frame arrives before the PINGRESP.
    let before = h.clock_reads;
    h.inject(sid, &[qos0("s/a", b"x")]);
    h.input(Input::Wake);
    h.run_for(20);
    assert_eq!(h.clock_reads - before, 2, "while a ping is out (then the PINGRESP)");
    assert_eq!(h.take_events().iter().filter(|e| matches!(e, Event::Message { .. })).count(), 8);
    assert!(h.client.stats().connected);

    let mut c = cfg();
    c.recv_silence_ms = Some(7_500);
    let mut h = Harness::new(c);
    h.lazy = true;
    h.run_for(100);
    let sid = h.socket_to(LOCAL).expect("socket");
    let before = h.clock_reads;
    h.inject(sid, &[qos0("s/a", b"x")]);
    h.run_for(20);
    assert_eq!(h.clock_reads - before, 1, "recv_silence_ms: the receive time counts");
}
