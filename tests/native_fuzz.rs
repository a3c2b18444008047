//! Seeded fuzzing of every decoder that reads bytes from the network, except
//! MQTT's (which has its own): the envelope, mesh bodies, replication bodies,
//! routing bodies and probes, RTC signals, tab frames and the shared state's
//! bodies and stored records.
//!
//! Each decoder gets random bytes and mutations of valid encodings
//! (truncations, bit flips, inserted bytes, length fields set huge). What is
//! checked for every input:
//! * no panic (caught and counted; the first offending input is printed);
//! * no allocation beyond what arrived: the bytes allocated while decoding
//!   (peak, counted by a per-thread counting allocator) stay under
//!   `ALLOC_PER_BYTE × input length + ALLOC_FIXED`. A length field that
//!   claims more than the input holds must be refused before allocating.
//!
//! `cargo test` runs `VM_FUZZ_INPUTS` (default 50,000) inputs per decoder;
//! `scripts/fuzz` runs the same loop in release mode with ≥ 1 M inputs and
//! prints inputs/s and panics per decoder.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::Rc;
use std::time::Instant;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use venuemesh::election::Term;
use venuemesh::envelope::{Envelope, Header, Kind, VenueKey};
use venuemesh::hlc::Hlc;
use venuemesh::mesh::wire::{self as mesh_wire, Body, Capabilities, PresenceInfo};
use venuemesh::outbox::CommandId;
use venuemesh::replication::wire::{self as rep_wire, AckState, Cmd, RepMsg};
use venuemesh::rng::Rng;
use venuemesh::routing::wire::{self as routing_wire, Ack, AckEntry, AppBody, Data, Signal};
use venuemesh::score::DeviceKind;
use venuemesh::state::{audit, codec as state_codec, wire as state_wire};

// ---------------------------------------------------------------------------------------------
// A counting allocator: current and peak bytes per thread (parallel tests do not disturb it).

struct Counting;

thread_local! {
    static NOW: Cell<usize> = const { Cell::new(0) };
    static PEAK: Cell<usize> = const { Cell::new(0) };
}

fn grow(n: usize) {
    let _ = NOW.try_with(|c| {
        let v = c.get() + n;
        c.set(v);
        let _ = PEAK.try_with(|p| p.set(p.get().max(v)));
    });
}

fn shrink(n: usize) {
    let _ = NOW.try_with(|c| c.set(c.get().saturating_sub(n)));
}

// SAFETY: forwards to the system allocator unchanged; only counts sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(l) };
        if !p.is_null() {
            grow(l.size());
        }
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) };
        shrink(l.size());
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        let q = unsafe { System.realloc(p, l, new) };
        if !q.is_null() {
            if new > l.size() {
                grow(new - l.size());
            } else {
                shrink(l.size() - new);
            }
        }
        q
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Bytes `f` allocated at its peak, above what was allocated before it ran.
fn peak_during<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let base = NOW.with(|c| c.get());
    PEAK.with(|p| p.set(base));
    let out = f();
    (out, PEAK.with(|p| p.get()) - base)
}

/// A decoded value may take more room than its encoding (a `String` or an
/// `Rc<Cmd>` per id, a `Vec` header per list), but only by a constant factor:
/// the smallest encoded item is a few bytes and the largest decoded item
/// header is ~100 bytes. A length field trusted before checking the input
/// would allocate up to 4 GiB, far above this.
const ALLOC_PER_BYTE: usize = 16;
/// Room for fixed-size results (an error, an empty map).
const ALLOC_FIXED: usize = 512;

// ---------------------------------------------------------------------------------------------
// The loop.

/// Calls a decoder; `true` when the input decoded.
type Decode = Box<dyn Fn(&[u8]) -> bool>;

/// One decoder under test: its valid encodings to mutate, and how to call it
/// (`true` when the input decoded).
struct Target {
    name: &'static str,
    seeds: Vec<Vec<u8>>,
    /// Type bytes random inputs start with (so noise reaches past the first check).
    type_bytes: Vec<u8>,
    decode: Decode,
}

#[derive(Debug, Default)]
struct Report {
    inputs: u64,
    decoded: u64,
    panics: u64,
    first_panic: Option<Vec<u8>>,
    over_budget: u64,
    first_over: Option<(Vec<u8>, usize)>,
    worst_ratio: f64,
    secs: f64,
}

fn mutate(rng: &mut Rng, b: &mut Vec<u8>) {
    for _ in 0..1 + rng.below(3) {
        let at = rng.below(b.len() as u64 + 1) as usize;
        match rng.below(6) {
            0 if at < b.len() => b[at] ^= 1 << rng.below(8),
            1 => b.truncate(at),
            2 => b.insert(at, rng.next_u64() as u8),
            3 if at < b.len() => b[at] = [0, 0xff, 0x80, 0x7f, 0x01][rng.below(5) as usize],
            // A length field set huge: 2 or 4 bytes of 0xff (or 0x7f..) where a length may be.
            4 => {
                let w = [1usize, 2, 4][rng.below(3) as usize];
                let top = if rng.chance(0.5) { 0xff } else { 0x7f };
                for i in 0..w {
                    if at + i < b.len() {
                        b[at + i] = if i == 0 { top } else { 0xff };
                    }
                }
            }
            5 if at < b.len() => {
                // Duplicate a slice (repeated items, lists longer than their count).
                let end = (at + 1 + rng.below(16) as usize).min(b.len());
                let piece = b[at..end].to_vec();
                b.splice(at..at, piece);
            }
            _ => {}
        }
    }
}

fn run(t: &Target, n: u64, seed: u64) -> Report {
    let mut rng = Rng::new(seed);
    let mut r = Report::default();
    let start = Instant::now();
    for i in 0..n {
        let mut b = if i % 4 == 0 || t.seeds.is_empty() {
            let mut b = Vec::new();
            if !t.type_bytes.is_empty() && rng.chance(0.8) {
                b.push(t.type_bytes[rng.below(t.type_bytes.len() as u64) as usize]);
            }
            b.extend((0..rng.below(96)).map(|_| rng.next_u64() as u8));
            b
        } else {
            t.seeds[rng.below(t.seeds.len() as u64) as usize].clone()
        };
        if i % 4 != 0 || rng.chance(0.3) {
            mutate(&mut rng, &mut b);
        }
        b.shrink_to_fit();
        let (res, peak) = peak_during(|| catch_unwind(AssertUnwindSafe(|| (t.decode)(&b))));
        r.inputs += 1;
        match res {
            Ok(true) => r.decoded += 1,
            Ok(false) => {}
            Err(_) => {
                r.panics += 1;
                r.first_panic.get_or_insert_with(|| b.clone());
            }
        }
        let budget = ALLOC_PER_BYTE * b.len() + ALLOC_FIXED;
        r.worst_ratio = r.worst_ratio.max(peak.saturating_sub(ALLOC_FIXED) as f64 / b.len().max(1) as f64);
        if peak > budget {
            r.over_budget += 1;
            if r.first_over.is_none() {
                r.first_over = Some((b.clone(), peak));
            }
        }
    }
    r.secs = start.elapsed().as_secs_f64();
    r
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn inputs() -> u64 {
    std::env::var("VM_FUZZ_INPUTS").ok().and_then(|v| v.parse().ok()).unwrap_or(50_000)
}

/// Runs `t`, prints its row and fails on any panic or over-budget allocation.
fn check(t: Target, seed: u64) {
    let n = inputs();
    // Silence the default hook's message per caught panic; the report names the input.
    let r = run(&t, n, seed);
    println!(
        "fuzz {:<22} inputs {:>9}  decoded {:>8}  panics {}  over-alloc {}  worst {:.1} B/B  {:>10.0} inputs/s",
        t.name,
        r.inputs,
        r.decoded,
        r.panics,
        r.over_budget,
        r.worst_ratio,
        r.inputs as f64 / r.secs.max(1e-9)
    );
    assert!(r.decoded > 0, "{}: no input decoded, the mutations never reach the parser", t.name);
    assert_eq!(r.panics, 0, "{}: panicked on {}", t.name, hex(r.first_panic.as_deref().unwrap_or_default()));
    if let Some((b, peak)) = r.first_over {
        panic!("{}: allocated {peak} bytes decoding {} input bytes: {}", t.name, b.len(), hex(&b));
    }
}

// ---------------------------------------------------------------------------------------------
// Valid encodings to mutate.

const SECRET: &[u8] = b"venuemesh-fuzz-secret-0123456789";

fn venue_key() -> VenueKey {
    VenueKey::new("fuzz-venue", 1, SECRET).unwrap()
}

fn mesh_bodies() -> Vec<Vec<u8>> {
    let term = Term { number: 7, score: 91_000, hub: "pos-1".into() };
    [
        Body::Join(PresenceInfo { protocol: 1, kind: DeviceKind::Pos, capabilities: Capabilities::REPLICA.with(Capabilities::WEBRTC), score: 80_000 }),
        Body::Leave,
        Body::Heartbeat { term: Some(term.clone()), hub: Some("pos-1".into()), score: 70_000, queue_depth: 3, ended: true, direct_only: false },
        Body::Heartbeat { term: Some(term), hub: Some("kiosk-9".into()), score: 1, queue_depth: u64::MAX, ended: false, direct_only: true },
        Body::Heartbeat { term: None, hub: None, score: 0, queue_depth: 0, ended: false, direct_only: false },
        Body::HubClaim { term: 9, score: 100_000 },
    ]
    .iter()
    .map(|b| b.encode().unwrap())
    .collect()
}

fn cmd(id: &str, payload: &[u8]) -> Rc<Cmd> {
    Rc::new(Cmd {
        id: CommandId::new(id),
        origin: "pos-1".into(),
        topic: "transaction".into(),
        hlc: 0x019b_fee5_5100_0003,
        created_at: 1_769_508_000_000,
        payload: payload.to_vec(),
    })
}

fn rep_bodies() -> Vec<Vec<u8>> {
    [
        RepMsg::Replicate(vec![cmd("c1", b"hi"), cmd("pos-1-0000000000000001", &[7; 40])]),
        RepMsg::SyncAck(vec![(CommandId::new("c1"), AckState::Durable), (CommandId::new("c2"), AckState::CloudAcked)]),
        RepMsg::CloudAck(vec![CommandId::new("c1"), CommandId::new("c2"), CommandId::new("c3")]),
        RepMsg::Upload { batch: 7, cmds: vec![cmd("c1", b"{\"total\":3}")] },
    ]
    .iter()
    .map(|m| m.encode().unwrap())
    .collect()
}

fn app_bodies() -> Vec<Vec<u8>> {
    let mut v: Vec<Vec<u8>> = [
        AppBody::Data(Data { ack: true, room: None, epoch: 1, seq: 3, base: 2, id: 9, attempt: 1, payload: b"hello".to_vec() }),
        AppBody::Data(Data { ack: false, room: Some("kitchen/orders".into()), epoch: 9, seq: 10, base: 4, id: 0, attempt: 255, payload: vec![0; 64] }),
        AppBody::Ack(Ack { epoch: 7, entries: (0..20).map(|i| AckEntry { id: i, attempt: 1 }).collect() }),
    ]
    .iter()
    .map(|m| m.encode().unwrap())
    .collect();
    v.push(routing_wire::encode_probe(42));
    v.push(routing_wire::encode_probe_reply(u64::MAX));
    v
}

fn signals() -> Vec<Vec<u8>> {
    let sdp = "v=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\n".to_string();
    [
        Signal::Offer { session: 1, sdp: sdp.clone() },
        Signal::Answer { session: 2, sdp },
        Signal::Candidate { session: 3, candidate: "candidate:1 1 udp 2113937151 10.0.0.2 50000 typ host".into(), mid: Some("0".into()), mline: Some(0) },
        Signal::Candidate { session: 4, candidate: String::new(), mid: None, mline: None },
        Signal::Request,
    ]
    .iter()
    .map(|s| s.encode().unwrap())
    .collect()
}

/// The shared state's documented bodies (`tests/vectors/state.json`).
fn state_bodies() -> Vec<Vec<u8>> {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors/state.json")).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let mut out = Vec::new();
    for section in ["bodies", "records"] {
        if let Some(map) = json.get(section).and_then(|v| v.as_object()) {
            for v in map.values() {
                if let Some(s) = v.as_str() {
                    if s.len() % 2 == 0 && s.bytes().all(|c| c.is_ascii_hexdigit()) {
                        out.push((0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect());
                    }
                }
            }
        }
    }
    assert!(out.len() >= 4, "the state vectors file has bodies");
    out
}

/// Stored records of the shared state, as the store writes them.
fn state_records() -> Vec<Vec<u8>> {
    use std::collections::BTreeMap;
    use venuemesh::state::model::{Context, Counter, Op, Write, WriteId};
    use venuemesh::state::{ConflictEntry, SyncLogEntry, SyncStatus, Winner, WriteRef};
    let dev = |s: &str| -> Rc<str> { Rc::from(s) };
    let hlc = |n: u64| Hlc::from_packed(0x019b_fee5_5100_0003 + n);
    let w = |n: u64, op: Op| {
        Rc::new(Write {
            id: WriteId { hlc: hlc(n), writer: dev("pos-1") },
            seq: n,
            updated_at: (n % 2 == 0).then_some(1_769_508_000_500),
            ctx: Context::from_entries([(dev("pos-2"), hlc(0))]),
            op,
            proof: vec![0xaa; n as usize % 3],
        })
    };
    let live = vec![
        w(1, Op::Put(vec![(dev("name"), dev("\"Tea\"")), (dev("price"), dev("3"))])),
        w(2, Op::Patch(vec![(dev("price"), dev("3.5"))])),
        w(3, Op::Add(Counter { field: dev("qty"), delta: -5, total: -5 })),
    ];
    let ctx = Context::from_entries([(dev("pos-1"), hlc(3)), (dev("pos-2"), hlc(0))]);
    let wref = WriteRef { writer: "pos-1".into(), hlc: hlc(1), updated_at: None };
    let conflict = ConflictEntry {
        seq: 1,
        at: 1_769_508_000_000,
        collection: "products".into(),
        key: "sku-1".into(),
        local: Some("{\"price\":3}".into()),
        remote: "{\"price\":4}".into(),
        final_doc: None,
        local_writes: vec![wref.clone(), wref.clone()],
        remote_write: wref,
        winner: Winner::Remote,
        peer: "pos-2".into(),
    };
    let log = SyncLogEntry { seq: 2, at: 1_769_508_000_001, peer: "pos-2".into(), collection: "products".into(), status: SyncStatus::Conflict, reason: "diverged".into(), details: "{\"writes\":3}".into() };
    let frontier: BTreeMap<Rc<str>, u64> = [(dev("pos-1"), 7), (dev("pos-2"), 9)].into_iter().collect();
    vec![
        state_codec::encode_key_record(&live, &ctx).unwrap(),
        state_codec::encode_key_record(&live[..1], &Context::default()).unwrap(),
        state_codec::encode_frontier(&frontier).unwrap(),
        conflict.encode().unwrap(),
        log.encode().unwrap(),
    ]
}

fn sealed(kind: Kind, body: &[u8], counter: u64) -> Vec<u8> {
    let header = Header { kind, sender: "pos-1".into(), counter, term: 3, hlc: Hlc::new(1_769_508_000_000, 3).unwrap() };
    Envelope::seal(&header, body, &venue_key()).unwrap()
}

// ---------------------------------------------------------------------------------------------
// One test per decoder.

#[test]
fn fuzz_envelope_unsigned() {
    // What anyone on the broker can send: everything is refused before the
    // tag check or by it; nothing is parsed, nothing allocated.
    let key = venue_key();
    let seeds = mesh_bodies().iter().enumerate().map(|(i, b)| sealed(Kind::Heartbeat, b, i as u64)).collect();
    let ok = sealed(Kind::Heartbeat, &[], 1);
    let t = Target {
        name: "envelope (unsigned)",
        seeds,
        type_bytes: vec![1, 2],
        decode: Box::new(move |b| Envelope::open(b, &key).is_ok()),
    };
    // Unsigned mutations never decode: only the untouched valid seed proves the parser ran.
    assert!(Envelope::open(&ok, &venue_key()).is_ok());
    let n = inputs();
    let r = run(&t, n, 0xe1);
    println!("fuzz {:<22} inputs {:>9}  decoded {:>8}  panics {}  over-alloc {}  {:>10.0} inputs/s", t.name, r.inputs, r.decoded, r.panics, r.over_budget, r.inputs as f64 / r.secs.max(1e-9));
    assert_eq!(r.panics, 0, "panicked on {}", hex(r.first_panic.as_deref().unwrap_or_default()));
    assert_eq!(r.over_budget, 0, "{:?}", r.first_over.map(|(b, p)| (hex(&b), p)));
}

#[test]
fn fuzz_envelope_signed() {
    // What a device holding the key (or a bug in a peer) can send: the
    // mutated bytes are signed again, so the parser behind the tag sees them.
    let key = venue_key();
    let strip = |v: Vec<u8>| v[..v.len() - 32].to_vec();
    let mut seeds: Vec<Vec<u8>> = mesh_bodies().into_iter().enumerate().map(|(i, b)| strip(sealed(Kind::Heartbeat, &b, i as u64))).collect();
    seeds.extend(rep_bodies().into_iter().map(|b| strip(sealed(Kind::ReplicateCommand, &b, 99))));
    seeds.push(strip(sealed(Kind::Unknown(200), &[], u64::MAX)));
    let mac = Hmac::<Sha256>::new_from_slice(SECRET).unwrap();
    check(
        Target {
            name: "envelope (re-signed)",
            seeds,
            type_bytes: vec![1],
            decode: Box::new(move |b| {
                let mut signed = b.to_vec();
                signed.extend_from_slice(&mac.clone().chain_update(b).finalize().into_bytes());
                Envelope::open(&signed, &key).is_ok()
            }),
        },
        0xe2,
    );
}

#[test]
fn fuzz_mesh_bodies() {
    check(
        Target {
            name: "mesh bodies",
            seeds: mesh_bodies(),
            type_bytes: vec![1, 2, 3, 4],
            decode: Box::new(|b| mesh_wire::decode(b).is_ok()),
        },
        0x3e5,
    );
}

#[test]
fn fuzz_replication_bodies() {
    check(
        Target {
            name: "replication bodies",
            seeds: rep_bodies(),
            type_bytes: vec![0x10, 0x11, 0x12, 0x13],
            decode: Box::new(|b| rep_wire::decode(b).is_ok()),
        },
        0x4e9,
    );
}

#[test]
fn fuzz_routing_bodies() {
    check(
        Target {
            name: "routing bodies+probes",
            seeds: app_bodies(),
            type_bytes: vec![0x20, 0x21, 0x22, 0x23],
            decode: Box::new(|b| {
                let a = AppBody::decode(b).is_ok();
                let p = routing_wire::decode_probe(b).is_ok();
                let q = routing_wire::decode_probe_reply(b).is_ok();
                a || p || q
            }),
        },
        0x40e,
    );
}

#[test]
fn fuzz_rtc_signals() {
    check(
        Target {
            name: "rtc signals",
            seeds: signals(),
            type_bytes: vec![0x24, 0x25, 0x26, 0x27],
            decode: Box::new(|b| Signal::decode(b).is_ok()),
        },
        0x47c,
    );
}

#[test]
fn fuzz_tab_frames() {
    let env = sealed(Kind::AppMessage, b"x", 5);
    let seeds = vec![routing_wire::tab_frame(Some("pos-2"), &env), routing_wire::tab_frame(None, &env), routing_wire::tab_frame(Some(&"z".repeat(64)), &[])];
    check(
        Target {
            name: "tab frames",
            seeds,
            type_bytes: vec![0, 5, 64, 65],
            decode: Box::new(|b| routing_wire::parse_tab_frame(b).is_some()),
        },
        0x7ab,
    );
}

#[test]
fn fuzz_state_bodies() {
    check(
        Target {
            name: "state bodies",
            seeds: state_bodies(),
            type_bytes: vec![0x30, 0x31, 0x32],
            decode: Box::new(|b| state_wire::decode(b).is_ok()),
        },
        0x57a,
    );
}

#[test]
fn fuzz_state_records() {
    // Stored records come back from IndexedDB, which another tab of the same
    // origin (or a damaged disk) may have written: same rules as the network.
    check(
        Target {
            name: "state records",
            seeds: state_records(),
            type_bytes: vec![1],
            decode: Box::new(|b| {
                let a = state_codec::decode_key_record(b).is_ok();
                let f = state_codec::decode_frontier(b).is_ok();
                let c = audit::ConflictEntry::decode(b).is_ok();
                let l = audit::SyncLogEntry::decode(b).is_ok();
                a || f || c || l
            }),
        },
        0x5ec,
    );
}
