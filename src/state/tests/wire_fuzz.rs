//! The bodies byte for byte: the documented vectors (`tests/vectors/state.json`,
//! `PROTOCOL.md` Part 7), round trips, and 120,000 seeded hostile inputs.

use std::collections::BTreeMap;

use super::*;
use crate::hlc::Hlc;
use crate::rng::Rng;
use model::{Context, Counter, Op, Write, WriteId};
use wire::{Checksums, Node, Range, RangeBody, Reconcile, WriteBatch};

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

const HLC: u64 = 0x019b_fee5_5100_0003; // 1769508000000 ms, logical 3

fn dev(s: &str) -> DeviceId {
    Rc::from(s)
}

fn field(k: &str, v: &str) -> (Rc<str>, Rc<str>) {
    (Rc::from(k), Rc::from(v))
}

fn put_write() -> Write {
    Write {
        id: WriteId { hlc: Hlc::from_packed(HLC), writer: dev("pos-1") },
        seq: 1,
        updated_at: None,
        ctx: Context::default(),
        op: Op::Put(vec![field("name", "\"Tea\""), field("price", "3")]),
        proof: vec![],
    }
}

fn patch_write() -> Write {
    Write {
        id: WriteId { hlc: Hlc::from_packed(HLC + 0x1_0000), writer: dev("pos-2") },
        seq: 7,
        updated_at: Some(1_769_508_000_500),
        ctx: Context::from_entries([(dev("pos-1"), Hlc::from_packed(HLC))]),
        op: Op::Patch(vec![field("price", "3.5")]),
        proof: vec![0xaa, 0xbb],
    }
}

fn add_write() -> Write {
    Write {
        id: WriteId { hlc: Hlc::from_packed(HLC + 0x2_0000), writer: dev("pos-2") },
        seq: 8,
        updated_at: None,
        ctx: Context::from_entries([(dev("pos-1"), Hlc::from_packed(HLC + 0x1000)), (dev("pos-2"), Hlc::from_packed(HLC + 0x1_0000))]),
        op: Op::Add(Counter {
            field: Rc::from("qty"),
            delta: -5,
            total: -5,
        }),
        proof: vec![],
    }
}

/// The messages of the vectors file, by name.
fn documented() -> Vec<(&'static str, StateMsg)> {
    let del = Write {
        id: WriteId { hlc: Hlc::from_packed(HLC + 0x1000), writer: dev("pos-1") },
        seq: 2,
        updated_at: None,
        ctx: Context::from_entries([(dev("pos-1"), Hlc::from_packed(HLC))]),
        op: Op::Delete,
        proof: vec![],
    };
    vec![
        ("writes_put", StateMsg::Writes(WriteBatch { collection: "products".into(), keys: vec![(Rc::from("sku-1"), vec![Rc::new(put_write())])] })),
        (
            "writes_patch_delete",
            StateMsg::Writes(WriteBatch {
                collection: "products".into(),
                keys: vec![(Rc::from("sku-1"), vec![Rc::new(patch_write())]), (Rc::from("sku-2"), vec![Rc::new(del)])],
            }),
        ),
        ("writes_increment", StateMsg::Writes(WriteBatch { collection: "stock".into(), keys: vec![(Rc::from("sku-2"), vec![Rc::new(add_write())])] })),
        (
            "checksums",
            StateMsg::Checksums(Checksums {
                reply: true,
                collections: vec![
                    ("products".into(), Checksum { count: 2, sum: 0x0123_4567_89ab_cdef }),
                    ("stock".into(), Checksum { count: 300, sum: 7 }),
                ],
            }),
        ),
        (
            "reconcile_open",
            StateMsg::Reconcile(Reconcile {
                session: 0x0102_0304,
                msg: 0,
                open: true,
                from_initiator: true,
                collection: "products".into(),
                frontier: Some(BTreeMap::from([(dev("pos-1"), 2), (dev("pos-2"), 8)])),
                ranges: vec![Range {
                    node: Node::ROOT,
                    body: RangeBody::Children(vec![(0, Checksum { count: 40, sum: 1 }), (0xa, Checksum { count: 41, sum: 2 })]),
                }],
                ..Reconcile::default()
            }),
        ),
        (
            "reconcile_answer",
            StateMsg::Reconcile(Reconcile {
                session: 0x0102_0304,
                msg: 3,
                reply_to: Some(2),
                last: true,
                collection: "products".into(),
                ranges: vec![Range { node: Node { depth: 3, prefix: 0xa5f }, body: RangeBody::Items(vec![(0xa5f0_0000_0000_0001, 0x1111_2222_3333_4444)]) }],
                missing: vec![0xa5f0_0000_0000_0009],
                differing: vec![0xa5f0_0000_0000_0001],
                keys: vec![(Rc::from("sku-1"), vec![Rc::new(put_write())])],
                ..Reconcile::default()
            }),
        ),
    ]
}

fn up_payload() -> Vec<u8> {
    upstream_command("products", &Rc::from("sku-1"), &Rc::new(put_write())).unwrap().payload
}

fn vectors_file() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors/state.json")
}

/// Everything a device in another language must compute the same way.
fn computed() -> serde_json::Value {
    let mut bodies = serde_json::Map::new();
    for (name, m) in documented() {
        bodies.insert(name.into(), serde_json::Value::String(hex(&m.encode().unwrap())));
    }
    let mut state = KeyState::default();
    state.apply(Rc::new(put_write()));
    let record = codec::encode_key_record(state.live(), state.ctx()).unwrap();
    let signing = codec::signing_input("products", "sku-1", &patch_write()).unwrap();
    let up = upstream_command("products", &Rc::from("sku-1"), &Rc::new(put_write())).unwrap();
    let second = Write { id: WriteId { hlc: Hlc::from_packed(HLC + 1), writer: dev("pos-1") }, seq: 2, op: Op::Delete, ..put_write() };
    let batch: Vec<model::KeyedWrite> = vec![(Rc::from("sku-1"), Rc::new(put_write())), (Rc::from("sku-2"), Rc::new(second.clone()))];
    let ups = upstream_commands("products", &batch, 60 * 1024);
    assert_eq!(ups.len(), 1);
    let mut merged = state.clone();
    merged.apply(Rc::new(patch_write()));
    serde_json::json!({
        "bodies": bodies,
        "key_position": { "key": "sku-1", "position": format!("{:016x}", model::key_position("sku-1")) },
        "item_digest": { "key": "sku-1", "live": ["writes_put"], "digest": format!("{:016x}", state.digest("sku-1")) },
        "signing_input": { "collection": "products", "key": "sku-1", "write": "the patch of writes_patch_delete", "hex": hex(&signing) },
        "key_record": { "live": ["writes_put"], "hex": hex(&record) },
        "upstream_command": { "write": "writes_put", "id": up.id, "topic": up.topic, "payload_is": "bodies.writes_put" },
        "upstream_batch": {
            "writes": "the write of writes_put (sku-1), then a delete of sku-2 by pos-1 (seq 2, HLC + 1): one persist op",
            "id": ups[0].id, "topic": ups[0].topic, "payload": hex(&ups[0].payload),
            "write_ids": [upstream_write_id("products", "sku-1", &put_write()), upstream_write_id("products", "sku-2", &second)],
        },
        "document": { "live": ["writes_put", "writes_patch_delete (sku-1)"], "json": merged.document().unwrap() },
    })
}

/// `tests/vectors/state.json` is what the code produces (run with
/// `STATE_VECTORS_WRITE=1` to regenerate it after a deliberate change), and
/// every body in it decodes to the documented message.
#[test]
fn documented_vectors() {
    let now = computed();
    if std::env::var("STATE_VECTORS_WRITE").is_ok() {
        let mut text = serde_json::to_string_pretty(&now).unwrap();
        text.push('\n');
        std::fs::write(vectors_file(), text).unwrap();
    }
    let stored: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(vectors_file()).unwrap()).unwrap();
    assert_eq!(stored, now, "tests/vectors/state.json is out of date");
    for (name, m) in documented() {
        let bytes = unhex(stored["bodies"][name].as_str().unwrap());
        assert_eq!(wire::decode(&bytes).unwrap(), m, "{name}");
    }
    assert_eq!(hex(&up_payload()), stored["bodies"]["writes_put"], "an upstream payload is the write batch of that write");
    // The byte example of PROTOCOL.md Part 7 §3.
    assert_eq!(
        stored["bodies"]["writes_put"],
        "300870726f64756374730105706f732d310105736b752d310100019bfee55100000301000002046e616d650522546561220570726963650133"
    );
}

fn random_write(rng: &mut Rng) -> Write {
    let devs = ["a", "b", "c-0123456789"];
    let d = |rng: &mut Rng| dev(devs[rng.below(3) as usize]);
    let hlc = |rng: &mut Rng| Hlc::from_packed(rng.next_u64());
    let mut fields: Vec<(Rc<str>, Rc<str>)> = (0..rng.below(4))
        .map(|i| field(["x", "y", "z", "é"][i as usize], ["1", "\"s\"", "[true,null]", "{\"n\":-2.5e3}"][rng.below(4) as usize]))
        .collect();
    fields.sort();
    fields.dedup_by(|a, b| a.0 == b.0);
    let op = match rng.below(4) {
        0 => Op::Put(fields),
        1 if !fields.is_empty() => Op::Patch(fields),
        2 => Op::Delete,
        _ => Op::Add(Counter {
            field: Rc::from("q"),
            delta: rng.next_u64() as i64,
            total: rng.next_u64() as i64 >> rng.below(64),
        }),
    };
    Write {
        id: WriteId { hlc: hlc(rng), writer: d(rng) },
        seq: rng.next_u64() >> rng.below(64),
        updated_at: rng.chance(0.3).then(|| rng.next_u64()),
        ctx: Context::from_entries((0..rng.below(3)).map(|_| (d(rng), hlc(rng)))),
        op,
        proof: (0..rng.below(3) * 32).map(|_| rng.next_u64() as u8).collect(),
    }
}

fn random_msg(rng: &mut Rng) -> StateMsg {
    let keys = |rng: &mut Rng| -> Vec<codec::KeyWrites> {
        (0..rng.below(3)).map(|i| (Rc::from(format!("k{i}")), (0..1 + rng.below(2)).map(|_| Rc::new(random_write(rng))).collect())).collect()
    };
    match rng.below(3) {
        0 => {
            let mut k = keys(rng);
            if k.is_empty() {
                k.push((Rc::from("k"), vec![Rc::new(random_write(rng))]));
            }
            StateMsg::Writes(WriteBatch { collection: "c".into(), keys: k })
        }
        1 => StateMsg::Checksums(Checksums {
            reply: rng.chance(0.5),
            collections: (0..rng.below(3)).map(|i| (format!("c{i}"), Checksum { count: rng.next_u64() >> 40, sum: rng.next_u64() })).collect(),
        }),
        _ => {
            let depth = rng.below(17) as u8;
            let prefix = if depth == 16 { rng.next_u64() } else { rng.next_u64() & ((1u64 << (4 * depth)) - 1) };
            let node = Node { depth, prefix };
            let body = if depth < 16 && rng.chance(0.5) {
                {
                    let mut c = Vec::new();
                    for i in 0..16u8 {
                        if rng.chance(0.3) {
                            c.push((i, Checksum { count: rng.below(1000), sum: rng.next_u64() }));
                        }
                    }
                    RangeBody::Children(c)
                }
            } else {
                let (lo, _) = node.bounds();
                let mut items: Vec<(u64, u64)> = (0..rng.below(4)).map(|_| (lo, rng.next_u64())).collect();
                items.sort();
                items.dedup();
                RangeBody::Items(items)
            };
            StateMsg::Reconcile(Reconcile {
                session: rng.next_u64() as u32,
                msg: rng.next_u64() as u16,
                reply_to: rng.chance(0.5).then(|| rng.below(0xffff) as u16),
                open: rng.chance(0.5),
                last: rng.chance(0.5),
                busy: rng.chance(0.1),
                from_initiator: rng.chance(0.5),
                collection: "c".into(),
                frontier: rng.chance(0.5).then(|| BTreeMap::from([(dev("a"), rng.next_u64())])),
                ranges: vec![Range { node, body }],
                missing: (0..rng.below(3)).map(|_| rng.next_u64()).collect(),
                differing: (0..rng.below(3)).map(|_| rng.next_u64()).collect(),
                keys: keys(rng),
            })
        }
    }
}

#[test]
fn every_body_round_trips() {
    let mut rng = Rng::new(0x57a7e);
    for _ in 0..5_000 {
        let m = random_msg(&mut rng);
        let bytes = m.encode().unwrap();
        assert_eq!(wire::decode(&bytes).as_ref(), Ok(&m));
    }
    for (_, m) in documented() {
        assert_eq!(wire::decode(&m.encode().unwrap()), Ok(m));
    }
}

/// 120,000 seeded inputs — valid bodies with bytes flipped, cut, inserted,
/// and plain noise after a valid type byte: decoding never panics, a body
/// that decodes re-encodes to one that decodes to the same message, and no
/// decoded message holds more items than the input had bytes.
#[test]
fn fuzz_decoders_are_total() {
    let mut rng = Rng::new(0xf022);
    let seeds: Vec<Vec<u8>> = (0..200).map(|_| random_msg(&mut rng).encode().unwrap()).collect();
    let (mut ok, mut err) = (0u32, 0u32);
    for n in 0..120_000 {
        let mut b = if n % 4 == 0 {
            let mut b = vec![0x30 + rng.below(3) as u8];
            b.extend((0..rng.below(80)).map(|_| rng.next_u64() as u8));
            b
        } else {
            seeds[rng.below(seeds.len() as u64) as usize].clone()
        };
        for _ in 0..1 + rng.below(3) {
            let at = rng.below(b.len() as u64 + 1) as usize;
            match rng.below(4) {
                0 if at < b.len() => b[at] ^= 1 << rng.below(8),
                1 => b.truncate(at),
                2 => b.insert(at, rng.next_u64() as u8),
                _ if at < b.len() => b[at] = [0, 0xff, 0x80, 0x7f][rng.below(4) as usize],
                _ => {}
            }
        }
        match wire::decode(&b) {
            Ok(m) => {
                ok += 1;
                let items = match &m {
                    StateMsg::Writes(w) => w.keys.iter().map(|k| k.1.len()).sum(),
                    StateMsg::Checksums(c) => c.collections.len(),
                    StateMsg::Reconcile(r) => r.ranges.len() + r.missing.len() + r.differing.len() + r.keys.len(),
                };
                assert!(items <= b.len());
                if let Ok(again) = m.encode() {
                    assert_eq!(wire::decode(&again).as_ref(), Ok(&m));
                }
            }
            Err(_) => err += 1,
        }
        let _ = codec::decode_key_record(&b);
        let _ = codec::decode_frontier(&b);
        let _ = ConflictEntry::decode(&b);
        let _ = SyncLogEntry::decode(&b);
    }
    assert!(ok > 5_000 && err > 50_000, "{ok} decoded, {err} refused");
}

#[test]
fn stored_records_round_trip() {
    let mut s = KeyState::default();
    for w in [put_write(), patch_write(), add_write()] {
        s.apply(Rc::new(w));
    }
    let bytes = codec::encode_key_record(s.live(), s.ctx()).unwrap();
    let (live, ctx) = codec::decode_key_record(&bytes).unwrap();
    assert_eq!(KeyState::from_parts(live, ctx), s);
    assert_eq!(codec::decode_key_record(&[]), Err(crate::wire::WireError::Empty));
    assert_eq!(codec::decode_key_record(&[2]), Err(crate::wire::WireError::UnknownType(2)));
    let f = BTreeMap::from([(dev("a"), 5u64), (dev("b"), u64::MAX)]);
    assert_eq!(codec::decode_frontier(&codec::encode_frontier(&f).unwrap()).unwrap(), f);
    // A bad node, a patch without fields, trailing bytes: refused.
    let mut m = StateMsg::Writes(WriteBatch { collection: "c".into(), keys: vec![(Rc::from("k"), vec![Rc::new(put_write())])] }).encode().unwrap();
    m.push(0);
    assert!(wire::decode(&m).is_err());
    let mut bad = patch_write();
    bad.op = Op::Patch(vec![]);
    assert!(StateMsg::Writes(WriteBatch { collection: "c".into(), keys: vec![(Rc::from("k"), vec![Rc::new(bad)])] }).encode().is_err());
    let odd = Reconcile { collection: "c".into(), ranges: vec![Range { node: Node { depth: 1, prefix: 16 }, body: RangeBody::Items(vec![]) }], ..Default::default() };
    assert!(StateMsg::Reconcile(odd).encode().is_err());
}
