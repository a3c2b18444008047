//! Property tests: the codec round-trips, never panics on any bytes, and
//! does not care how the stream is chunked; the session and client never
//! panic on arbitrary network input.

use proptest::prelude::*;

use crate::mqtt::codec::{decode_one, encode, Decoder};
use crate::mqtt::packet::*;
use crate::mqtt::session::{Session, SessionConfig};
use crate::mqtt::topic::{topic_matches, validate_topic_filter, validate_topic_name};
use crate::mqtt::{Client, ClientConfig, EndpointConfig, Input, Output, SocketId};
use crate::rng::Rng;

fn qos() -> impl Strategy<Value = QoS> {
    prop_oneof![Just(QoS::AtMostOnce), Just(QoS::AtLeastOnce), Just(QoS::ExactlyOnce)]
}

fn pid() -> impl Strategy<Value = u16> {
    1..=u16::MAX
}

fn name() -> impl Strategy<Value = String> {
    "[a-z0-9/$ é_-]{1,24}"
}

fn filter() -> impl Strategy<Value = String> {
    prop_oneof![
        name(),
        Just("#".to_string()),
        (name(), prop::bool::ANY).prop_map(|(n, hash)| if hash { format!("{n}/#") } else { format!("+/{n}") }),
    ]
    .prop_filter("valid filter", |f| validate_topic_filter(f).is_ok())
}

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..max)
}

fn return_code() -> impl Strategy<Value = ConnectReturnCode> {
    (0u8..=5).prop_map(|c| ConnectReturnCode::from_u8(c).expect("0..=5"))
}

fn packet() -> impl Strategy<Value = Packet> {
    let will = (name(), bytes(40), qos(), any::<bool>()).prop_map(|(topic, payload, qos, retain)| Will { topic, payload, qos, retain });
    let connect = (any::<bool>(), any::<u16>(), "[A-Za-z0-9-]{0,30}", prop::option::of(will), prop::option::of(("[a-z]{0,10}", prop::option::of(bytes(20)))))
        .prop_map(|(clean_session, keep_alive, client_id, will, cred)| {
            let (username, password) = match cred {
                Some((u, p)) => (Some(u), p),
                None => (None, None),
            };
            Packet::Connect(Connect { clean_session, keep_alive, client_id, will, username, password })
        });
    let publish = (any::<bool>(), qos(), any::<bool>(), name(), pid(), bytes(600)).prop_map(|(dup, qos, retain, topic, packet_id, payload)| {
        let (dup, packet_id) = if qos == QoS::AtMostOnce { (false, 0) } else { (dup, packet_id) };
        Packet::Publish(Publish { dup, qos, retain, topic, packet_id, payload })
    });
    prop_oneof![
        connect,
        (any::<bool>(), return_code()).prop_map(|(session_present, code)| Packet::ConnAck(ConnAck { session_present, code })),
        publish,
        pid().prop_map(Packet::PubAck),
        pid().prop_map(Packet::PubRec),
        pid().prop_map(Packet::PubRel),
        pid().prop_map(Packet::PubComp),
        (pid(), prop::collection::vec((filter(), qos()), 1..5))
            .prop_map(|(packet_id, filters)| Packet::Subscribe(Subscribe { packet_id, filters })),
        (pid(), prop::collection::vec(prop::option::of(qos()), 1..5))
            .prop_map(|(packet_id, return_codes)| Packet::SubAck(SubAck { packet_id, return_codes })),
        (pid(), prop::collection::vec(filter(), 1..5))
            .prop_map(|(packet_id, filters)| Packet::Unsubscribe(Unsubscribe { packet_id, filters })),
        pid().prop_map(Packet::UnsubAck),
        Just(Packet::PingReq),
        Just(Packet::PingResp),
        Just(Packet::Disconnect),
    ]
}

fn decode_all(d: &mut Decoder) -> Vec<Packet> {
    let mut out = Vec::new();
    while let Ok(Some(p)) = d.next_packet() {
        out.push(p);
    }
    out
}

proptest! {
    #[test]
    fn roundtrip(p in packet()) {
        let mut buf = vec![0xAA]; // appends after existing bytes
        let n = encode(&p, &mut buf).expect("valid packets encode");
        prop_assert_eq!(n, buf.len() - 1);
        let (q, used) = decode_one(&buf[1..], usize::MAX).expect("decodes").expect("complete");
        prop_assert_eq!(used, n);
        prop_assert_eq!(q, p);
    }

    #[test]
    fn chunking_does_not_matter(ps in prop::collection::vec(packet(), 1..8), cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..12)) {
        let mut stream = Vec::new();
        for p in &ps {
            encode(p, &mut stream).expect("valid");
        }
        let mut points: Vec<usize> = cuts.iter().map(|i| i.index(stream.len() + 1)).collect();
        points.push(0);
        points.push(stream.len());
        points.sort_unstable();
        let mut d = Decoder::default();
        let mut got = Vec::new();
        for w in points.windows(2) {
            if w[0] % 2 == 0 {
                d.feed(&stream[w[0]..w[1]]);
            } else {
                d.feed_owned(stream[w[0]..w[1]].to_vec());
            }
            got.extend(decode_all(&mut d));
        }
        prop_assert_eq!(got, ps);
        prop_assert_eq!(d.buffered(), 0);
    }

    #[test]
    fn truncations_wait_for_more(p in packet(), cut in any::<prop::sample::Index>()) {
        let mut buf = Vec::new();
        encode(&p, &mut buf).expect("valid");
        let k = cut.index(buf.len());
        let mut d = Decoder::default();
        d.feed(&buf[..k]);
        prop_assert_eq!(d.next_packet(), Ok(None));
        prop_assert_eq!(decode_one(&buf[..k], usize::MAX), Ok(None));
    }

    /// The broker-side decoder (the client's) agrees with the full one on
    /// every packet a broker may send, valid or mutated, and gives the kind
    /// of the client-only ones (CONNECT, SUBSCRIBE, UNSUBSCRIBE).
    #[test]
    fn the_broker_side_decoder_agrees(p in packet(), flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..3)) {
        let mut buf = Vec::new();
        encode(&p, &mut buf).expect("valid");
        for (i, b) in flips {
            let i = i.index(buf.len());
            buf[i] ^= b | 1;
        }
        let (mut full, mut client) = (Decoder::default(), Decoder::default());
        full.feed(&buf);
        client.feed(&buf);
        let (a, b) = (full.next_packet(), client.next_from_broker());
        match buf[0] >> 4 {
            1 | 8 | 10 => match (&a, &b) {
                (Ok(Some(x)), Ok(Some(y))) => prop_assert_eq!(x.name(), y.name()),
                // A body the full decoder refuses: refused by its kind instead.
                (Err(_), Ok(Some(_))) => {}
                // Incomplete, or a fixed-header error: alike.
                _ => prop_assert_eq!(&a, &b),
            },
            _ => prop_assert_eq!(a, b),
        }
    }

    #[test]
    fn random_bytes_never_panic(chunks in prop::collection::vec(bytes(64), 0..8), max in 0usize..200) {
        let mut d = Decoder::new(max);
        for c in chunks {
            d.feed(&c);
            let _ = decode_all(&mut d);
            prop_assert!(d.buffered() <= max.max(5), "bounded buffering");
        }
    }

    #[test]
    fn mutated_packets_never_panic(p in packet(), flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4)) {
        let mut buf = Vec::new();
        encode(&p, &mut buf).expect("valid");
        for (i, b) in flips {
            let i = i.index(buf.len());
            buf[i] ^= b | 1;
        }
        let mut d = Decoder::default();
        d.feed(&buf);
        let _ = decode_all(&mut d);
    }

    #[test]
    fn topic_rules_agree(t in name(), f in filter()) {
        if validate_topic_name(&t).is_ok() {
            prop_assert!(topic_matches(&t, &t));
            prop_assert_eq!(topic_matches("#", &t), !t.starts_with('$'));
            prop_assert!(validate_topic_filter(&t).is_ok(), "every name is a filter");
        }
        let _ = topic_matches(&f, &t);
    }

    #[test]
    fn session_survives_any_broker_bytes(chunks in prop::collection::vec(prop_oneof![bytes(40), packet().prop_map(|p| { let mut v = Vec::new(); encode(&p, &mut v).expect("valid"); v })], 0..10)) {
        let mut cfg = SessionConfig::new("p");
        cfg.max_inflight = 3;
        let mut s = Session::new(cfg).expect("valid");
        s.connect(0, Some(100));
        let mut ack = Vec::new();
        encode(&Packet::ConnAck(ConnAck { session_present: false, code: ConnectReturnCode::Accepted }), &mut ack).expect("valid");
        s.handle_data(ack, 1);
        for q in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
            let _ = s.publish("t", vec![1], q, false, 2);
        }
        let _ = s.subscribe(&[("t/#", QoS::ExactlyOnce)], 2);
        for (i, c) in chunks.into_iter().enumerate() {
            s.handle_data(c, 3 + i as u64);
            s.handle_timeout(3 + i as u64);
            while s.poll_event().is_some() {}
            let _ = s.poll_transmit();
        }
    }

    #[test]
    fn client_survives_any_input_sequence(ops in prop::collection::vec((0u8..7, 0u64..4, bytes(24), 0u64..3_000), 0..60)) {
        let eps = vec![EndpointConfig::new("ws://a", 500), EndpointConfig::new("ws://b", 800)];
        let mut c = Client::new(ClientConfig::new(eps, SessionConfig::new("p")), Rng::new(3), 0).expect("valid");
        let mut now = 0;
        for (op, sock, data, dt) in ops {
            now += dt;
            let id = SocketId(sock);
            match op {
                0 => c.handle_input(Input::SocketOpened(id), now),
                1 => c.handle_input(Input::SocketData(id, data), now),
                2 => c.handle_input(Input::SocketClosed(id), now),
                3 => c.handle_input(Input::Wake, now),
                4 => c.handle_input(Input::Timeout, now),
                5 => { let _ = c.publish("t", &data, QoS::AtLeastOnce, false, now); }
                _ => {
                    // A well-formed CONNACK on whatever socket, to get past the handshake.
                    c.handle_input(Input::SocketData(id, vec![0x20, 2, 0, 0]), now);
                }
            }
            let mut n = 0;
            loop {
                n += 1;
                prop_assert!(n < 1_000, "poll_output must reach Timeout/Idle");
                match c.poll_output(now) {
                    Output::Timeout(t) => {
                        prop_assert!(t > now, "nothing left due after a drain: {} <= {}", t, now);
                        break;
                    }
                    Output::Idle => break,
                    _ => {}
                }
            }
        }
    }
}
