//! The cost of the v2 envelope per message, natively: seal (encrypt +
//! Ed25519 sign) and open (chain cached + Ed25519 verify + decrypt) of a
//! 200-byte body, beside the v1-style HMAC-SHA256 tag of the same bytes
//! measured in the same run (the ratio holds across machines; absolute
//! figures drift). Wasm figures are the browser bench's (`scripts/bench`).
//!
//! `cargo run --release --example envelope_v2` (figures only; timings are
//! never asserted).

use std::time::Instant;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use venuemesh::envelope::{Envelope, Header, Kind, Limits, SealOpts};
use venuemesh::hlc::Hlc;
use venuemesh::trust::{signing_key, Bundle, Cert, Chain, Credentials, Role, TrustStore};

const WALL: u64 = 1_769_508_000_000;
const N: u32 = 2_000;

fn store(device: &str, root: &venuemesh::trust::SigningKey, secret: [u8; 32]) -> TrustStore {
    let key = signing_key(&secret);
    let cert = |role, id: &str, pk: [u8; 32]| Chain(vec![Cert::issue(root, role, "shop-1", id, pk, 0, 0).unwrap()]);
    let cloud = signing_key(&[2; 32]);
    let bundle = Bundle {
        venue: "shop-1".into(),
        device: device.into(),
        root_pk: root.verifying_key().to_bytes(),
        chain: cert(Role::Device, device, key.verifying_key().to_bytes()),
        cloud_chain: cert(Role::Cloud, "ingest", cloud.verifying_key().to_bytes()),
        key_epoch: 1,
        content_key: [9; 32],
        crl: None,
    };
    TrustStore::new(&Credentials::new(&secret, bundle, WALL, 60_000).unwrap(), WALL, 60_000, 256).unwrap()
}

fn main() {
    let root = signing_key(&[1; 32]);
    let tx = store("pos-1", &root, [3; 32]);
    let mut rx = store("kiosk-1", &root, [4; 32]);
    rx.learn_chain(tx.chain_bytes(), WALL).unwrap();
    let body = vec![0x5a; 200];
    let header = |counter| Header { kind: Kind::AppMessage, sender: "pos-1".into(), counter, term: 1, hlc: Hlc::new(WALL, 0).unwrap() };
    let opts = SealOpts { encrypt: true, attach_chain: false };

    let t = Instant::now();
    let sealed: Vec<Vec<u8>> = (0..N).map(|c| Envelope::seal_with(&header(u64::from(c)), &body, &tx, opts, Limits::default()).unwrap()).collect();
    let seal_us = t.elapsed().as_secs_f64() * 1e6 / f64::from(N);
    let t = Instant::now();
    for s in &sealed {
        Envelope::open(s, &mut rx, WALL).unwrap();
    }
    let open_us = t.elapsed().as_secs_f64() * 1e6 / f64::from(N);
    // With the chain attached (heartbeats): the chain is compared to the cached one.
    let hb: Vec<Vec<u8>> = (0..N).map(|c| Envelope::seal(&Header { kind: Kind::Heartbeat, ..header(u64::from(c)) }, &body, &tx).unwrap()).collect();
    let t = Instant::now();
    for s in &hb {
        Envelope::open(s, &mut rx, WALL).unwrap();
    }
    let open_chain_us = t.elapsed().as_secs_f64() * 1e6 / f64::from(N);

    // The peer: v1's HMAC-SHA256 tag over the same bytes (seal ≈ open).
    let mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&[7; 32]).unwrap();
    let t = Instant::now();
    let mut acc = 0u8;
    for s in &sealed {
        acc ^= mac.clone().chain_update(s).finalize().into_bytes()[0];
    }
    let hmac_us = t.elapsed().as_secs_f64() * 1e6 / f64::from(N);

    println!("envelope v2, {}-byte body, {N} messages (native, release; HMAC checksum {acc})", body.len());
    println!("| row | µs per message | × v1 HMAC |");
    println!("|---|---|---|");
    println!("| seal (ChaCha20-Poly1305 + Ed25519 sign) | {seal_us:.1} | {:.0} |", seal_us / hmac_us);
    println!("| open, chain cached (verify + decrypt) | {open_us:.1} | {:.0} |", open_us / hmac_us);
    println!("| open, chain attached = cached | {open_chain_us:.1} | {:.0} |", open_chain_us / hmac_us);
    println!("| v1 HMAC-SHA256 tag (peer) | {hmac_us:.2} | 1 |");
    println!("| envelope bytes: plain overhead {} + chain {} on heartbeats + 16 tag", venuemesh::envelope::FIXED_OVERHEAD, tx.chain_bytes().len());
}
