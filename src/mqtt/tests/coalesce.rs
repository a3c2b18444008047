//! The coalescing limit: a burst of publishes leaves in frames of about
//! [`COALESCE_LIMIT`] bytes while the app is still publishing
//! ([`Client::poll_transmit_over`], what the web shell calls after each
//! publish), whole packets in order, and nothing is lost or doubled when the
//! connection ends with bytes still waiting.

use super::broker::{Harness, Mode, LOCAL};
use crate::mqtt::packet::*;
use crate::mqtt::*;

fn connected() -> Harness {
    let mut h = Harness::new(SessionConfig::new("vm-v1-pos1-a"));
    h.run_for(100);
    assert!(h.client.stats().connected, "{:?}", h.events);
    h.take_events();
    h
}

/// Connected and subscribed to `topic` (the broker echoes the burst back).
fn subscribed(topic: &str, qos: QoS) -> Harness {
    let mut h = connected();
    h.client.subscribe(topic, qos, h.now).expect("ok");
    h.run_for(100);
    h.take_events();
    h
}

/// 200 B payloads whose first four bytes are `i`.
fn payload(i: u32) -> Vec<u8> {
    let mut p = i.to_be_bytes().to_vec();
    p.resize(200, b'x');
    p
}

fn index(p: &[u8]) -> u32 {
    u32::from_be_bytes([p[0], p[1], p[2], p[3]])
}

fn received_publishes(h: &Harness) -> Vec<Publish> {
    h.received.iter().filter_map(|(_, _, p)| if let Packet::Publish(p) = p { Some(p.clone()) } else { None }).collect()
}

fn message_indexes(h: &Harness) -> Vec<u32> {
    h.events().filter_map(|e| if let Event::Message { payload, .. } = e { Some(index(payload)) } else { None }).collect()
}

#[test]
fn a_burst_leaves_in_frames_of_the_limit_whole_and_in_order() {
    let mut h = subscribed("b", QoS::AtMostOnce);
    let packet_len = codec::publish_len("b", 200, QoS::AtMostOnce);
    let sends_before = h.sends.len();
    let mut early = Vec::new();
    for i in 0..1_000 {
        h.client.publish("b", &payload(i), QoS::AtMostOnce, false, h.now).expect("ok");
        if let Some(len) = h.send_early() {
            early.push((i, len));
        }
    }
    // Each early frame is the limit or just over (the packet that crossed it).
    let total = 1_000 * packet_len;
    assert_eq!(early.len(), total / COALESCE_LIMIT, "{early:?}");
    for &(_, len) in &early {
        assert!((COALESCE_LIMIT..COALESCE_LIMIT + packet_len).contains(&len), "frame of {len} B");
    }
    // The first frame left after ~80 publishes, not after the 1,000th.
    assert_eq!(early[0].0 as usize, COALESCE_LIMIT.div_ceil(packet_len) - 1);
    // The rest leaves at the drain, as one more frame.
    h.drain();
    let frames: Vec<usize> = h.sends[sends_before..].iter().map(|s| s.2).collect();
    assert_eq!(frames.len(), early.len() + 1);
    assert_eq!(frames.iter().sum::<usize>(), 1_000, "whole packets only, each counted once");
    h.run_for(100);
    let at_broker: Vec<u32> = received_publishes(&h).iter().map(|p| index(&p.payload)).collect();
    assert_eq!(at_broker, (0..1_000).collect::<Vec<_>>());
    assert_eq!(message_indexes(&h), (0..1_000).collect::<Vec<_>>(), "back at the subscriber in order");
    assert_eq!(h.events().filter(|e| matches!(e, Event::PublishDone { .. })).count(), 1_000);
}

#[test]
fn a_publish_larger_than_the_limit_goes_out_at_once_and_alone() {
    let mut h = subscribed("big", QoS::AtLeastOnce);
    let big = vec![7u8; 3 * COALESCE_LIMIT];
    h.client.publish("big", b"before", QoS::AtLeastOnce, false, h.now).expect("ok");
    assert_eq!(h.send_early(), None, "below the limit: waits for the drain");
    h.client.publish("big", &big, QoS::AtLeastOnce, false, h.now).expect("ok");
    let len = h.send_early().expect("over the limit: out at once");
    assert!(len > big.len());
    h.client.publish("big", b"after", QoS::AtLeastOnce, false, h.now).expect("ok");
    assert_eq!(h.send_early(), None);
    h.run_for(100);
    let got: Vec<Vec<u8>> =
        h.events().filter_map(|e| if let Event::Message { payload, .. } = e { Some(payload.clone()) } else { None }).collect();
    assert_eq!(got, vec![b"before".to_vec(), big, b"after".to_vec()]);
    assert_eq!(h.events().filter(|e| matches!(e, Event::PublishDone { .. })).count(), 3);
}

#[test]
fn nothing_leaves_early_without_a_connection_up() {
    let mut h = connected();
    h.kill(LOCAL);
    h.set_mode(LOCAL, Mode::Down);
    h.run_for(20);
    assert!(!h.client.stats().connected);
    for i in 0..200 {
        h.client.publish("q", &payload(i), QoS::AtLeastOnce, false, h.now).expect("queued");
        assert_eq!(h.send_early(), None, "publish {i} while down");
    }
    h.set_mode(LOCAL, Mode::Up);
    h.run_for(5_000);
    assert!(h.client.stats().connected);
    let sent: Vec<u32> = received_publishes(&h).iter().map(|p| index(&p.payload)).collect();
    assert_eq!(sent, (0..200).collect::<Vec<_>>(), "sent after the CONNACK, in order");
}

/// The connection ends with publishes written but not yet sent (under the
/// limit, before the drain): QoS 1 loses nothing (resent on the next
/// connection, in order); QoS 0 is at most once, as documented: the bytes
/// die with the connection, reported done, never sent twice.
#[test]
fn connection_lost_with_bytes_waiting_keeps_qos1_and_drops_qos0() {
    let mut h = connected();
    let before = received_publishes(&h).len();
    for i in 0..20 {
        let qos = if i % 2 == 0 { QoS::AtLeastOnce } else { QoS::AtMostOnce };
        h.client.publish("w", &payload(i), qos, false, h.now).expect("ok");
        assert_eq!(h.send_early(), None);
    }
    // The socket closes before the drain that would have sent them.
    let sid = h.socket_to(LOCAL).expect("s");
    h.client.handle_input(Input::SocketClosed(sid), h.now);
    h.kill(LOCAL);
    h.drain();
    h.run_for(5_000);
    assert!(h.client.stats().connected, "reconnected");
    let sent: Vec<u32> = received_publishes(&h)[before..].iter().map(|p| index(&p.payload)).collect();
    assert_eq!(sent, (0..20).step_by(2).collect::<Vec<_>>(), "every QoS 1 once, in order; no QoS 0");
    let s = h.client.stats();
    assert_eq!((s.inflight, s.queued), (0, 0));
    assert_eq!(h.events().filter(|e| matches!(e, Event::PublishDone { .. })).count(), 20);
}
