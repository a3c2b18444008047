//! Unit tests of the codec: known encodings, every error, chunking.
use super::decode::parse_fixed_header;
use super::encode::{put_varint, varint_len};
use super::*;
use crate::mqtt::packet::*;

fn enc(p: &Packet) -> Vec<u8> {
    let mut v = Vec::new();
    encode(p, &mut v).expect("valid packet");
    v
}

fn dec(bytes: &[u8]) -> Result<Option<Packet>, DecodeError> {
    let mut d = Decoder::default();
    d.feed(bytes);
    d.next_packet()
}

#[test]
fn known_encodings() {
    assert_eq!(enc(&Packet::PingReq), [0xC0, 0]);
    assert_eq!(enc(&Packet::PubRel(0x1234)), [0x62, 2, 0x12, 0x34]);
    let c = Packet::Connect(Connect {
        clean_session: true,
        keep_alive: 30,
        client_id: "ab".into(),
        will: None,
        username: None,
        password: None,
    });
    assert_eq!(enc(&c), [0x10, 14, 0, 4, b'M', b'Q', b'T', b'T', 4, 2, 0, 30, 0, 2, b'a', b'b']);
    let p = Packet::Publish(Publish {
        dup: true,
        qos: QoS::AtLeastOnce,
        retain: true,
        topic: "t".into(),
        packet_id: 7,
        payload: b"hi".to_vec(),
    });
    assert_eq!(enc(&p), [0x3B, 7, 0, 1, b't', 0, 7, b'h', b'i']);
}

#[test]
fn varint_boundaries() {
    for n in [0usize, 127, 128, 16_383, 16_384, 2_097_151, 2_097_152, MAX_REMAINING_LENGTH] {
        let mut v = vec![0x30];
        put_varint(&mut v, n);
        assert_eq!(v.len() - 1, varint_len(n));
        assert_eq!(parse_fixed_header(&v), Ok(Some((v.len(), n))));
    }
    assert_eq!(dec(&[0x30, 0xFF, 0xFF, 0xFF, 0xFF]), Err(DecodeError::MalformedRemainingLength));
}

#[test]
fn rejects_bad_input() {
    assert_eq!(dec(&[0x00, 0]), Err(DecodeError::InvalidPacketType(0)));
    assert_eq!(dec(&[0xF0, 0]), Err(DecodeError::InvalidPacketType(15)));
    assert_eq!(dec(&[0x60, 2, 0, 1]), Err(DecodeError::InvalidFlags { packet_type: 6, flags: 0 }));
    assert_eq!(dec(&[0x40, 2, 0, 0]), Err(DecodeError::ZeroPacketId));
    assert_eq!(dec(&[0x36, 5, 0, 1, b't', 0, 1]), Err(DecodeError::InvalidQoS(3)));
    assert_eq!(dec(&[0x38, 3, 0, 1, b't']), Err(DecodeError::InvalidFlags { packet_type: 3, flags: 8 }));
    assert_eq!(dec(&[0x30, 3, 0, 1, b'+']), Err(DecodeError::InvalidTopic(TopicError::WildcardInName)));
    assert_eq!(dec(&[0x30, 3, 0, 1, 0xFF]), Err(DecodeError::InvalidUtf8));
    assert_eq!(dec(&[0x30, 3, 0, 1, 0]), Err(DecodeError::InvalidUtf8));
    assert_eq!(dec(&[0x30, 3, 0, 5, b'a']), Err(DecodeError::Truncated));
    assert_eq!(dec(&[0x20, 2, 0, 6]), Err(DecodeError::InvalidReturnCode(6)));
    assert_eq!(dec(&[0x90, 3, 0, 1, 3]), Err(DecodeError::InvalidReturnCode(3)));
    assert_eq!(dec(&[0xC0, 1, 0]), Err(DecodeError::MalformedPacket("wrong remaining length")));
    assert_eq!(dec(&[0x82, 2, 0, 1]), Err(DecodeError::MalformedPacket("SUBSCRIBE without filters")));
    assert_eq!(dec(&[0x82, 6, 0, 1, 0, 1, b'#', 3]), Err(DecodeError::InvalidQoS(3)));
    assert_eq!(dec(&[0x10, 4, 0, 4, b'M', b'Q']), Err(DecodeError::Truncated));
    assert_eq!(
        dec(&[0x10, 10, 0, 4, b'M', b'Q', b'T', b'T', 3, 2, 0, 0]),
        Err(DecodeError::UnsupportedProtocol)
    );
}

#[test]
fn too_large_is_refused_at_the_header() {
    let mut d = Decoder::new(100);
    d.feed(&[0x30, 0xE8, 0x07]); // remaining length 1000
    assert_eq!(d.next_packet(), Err(DecodeError::PacketTooLarge { size: 1003, max: 100 }));
    assert_eq!(d.buffered(), 0);
    d.feed(&[0xC0, 0]);
    assert!(d.next_packet().is_err(), "stays failed");
    d.reset();
    d.feed(&[0xC0, 0]);
    assert_eq!(d.next_packet(), Ok(Some(Packet::PingReq)));
}

#[test]
fn split_and_packed() {
    let mut stream = Vec::new();
    let big = Packet::Publish(Publish {
        dup: false,
        qos: QoS::ExactlyOnce,
        retain: false,
        topic: "a/b".into(),
        packet_id: 9,
        payload: vec![7; 300], // two-byte varint
    });
    encode(&Packet::PingResp, &mut stream).unwrap();
    encode(&big, &mut stream).unwrap();
    encode(&Packet::PubAck(3), &mut stream).unwrap();
    // Byte at a time, including inside the varint.
    let mut d = Decoder::default();
    let mut got = Vec::new();
    for b in &stream {
        d.feed(&[*b]);
        while let Some(p) = d.next_packet().unwrap() {
            got.push(p);
        }
    }
    assert_eq!(got, vec![Packet::PingResp, big.clone(), Packet::PubAck(3)]);
    // All at once, owned.
    let mut d = Decoder::default();
    d.feed_owned(stream);
    assert_eq!(d.next_packet(), Ok(Some(Packet::PingResp)));
    assert_eq!(d.next_packet(), Ok(Some(big)));
    assert_eq!(d.next_packet(), Ok(Some(Packet::PubAck(3))));
    assert_eq!(d.next_packet(), Ok(None));
    assert_eq!(d.buffered(), 0);
}

#[test]
fn encode_errors_write_nothing() {
    let mut out = vec![1, 2, 3];
    let long = "x".repeat(70_000);
    assert_eq!(encode_publish(&mut out, &long, b"", QoS::AtMostOnce, 0, false, false), Err(EncodeError::FieldTooLong));
    assert_eq!(encode_publish(&mut out, "t", b"", QoS::AtLeastOnce, 0, false, false), Err(EncodeError::ZeroPacketId));
    assert_eq!(encode_publish(&mut out, "t", b"", QoS::AtMostOnce, 0, true, false), Err(EncodeError::Invalid("DUP on a QoS 0 PUBLISH")));
    assert_eq!(encode(&Packet::Subscribe(Subscribe { packet_id: 1, filters: vec![] }), &mut out), Err(EncodeError::Empty));
    assert_eq!(out, [1, 2, 3]);
    assert_eq!(publish_len("t", 2, QoS::AtLeastOnce), 9);
}
