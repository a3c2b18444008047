//! `tests/vectors/protocol-v2.json`: byte vectors for other implementations
//! (the Node CA, the Python ingest). Every value is recomputed here from the
//! deterministic test CA and compared with the file; with
//! `VENUEMESH_WRITE_VECTORS=1` the file is written instead (only when the
//! wire format changes on purpose).

use super::cert::{Cert, Chain, Role};
use super::crl::Crl;
use super::pairing::{seal_response, InviteCode, PairRequest};
use super::receipt::Receipt;
use super::testca::{TestCa, NOT_BEFORE};
use super::{command, content, CryptoRng, TrustStore};
use crate::envelope::{Envelope, Header, Kind, Limits, SealOpts};
use crate::hlc::Hlc;
use crate::replication::Cmd;
use serde_json::{json, Value};

const PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors/protocol-v2.json");

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn vectors() -> Value {
    let ca = TestCa::new("demo-venue");
    let now = NOT_BEFORE + 1_000;
    let creds = ca.credentials("pos-1");
    let pos_key = ca.device_key("pos-1");
    let admin_key = ca.device_key("ipad-admin");
    let admin_chain = ca.chain("ipad-admin", Role::Admin);
    let joiner = ca.device_key("tab-7");
    let leaf = Cert::issue(&admin_key, Role::Device, "demo-venue", "tab-7", joiner.verifying_key().to_bytes(), NOT_BEFORE, 0).unwrap();
    let admin_issued = Chain(vec![leaf, admin_chain.0[0].clone()]);

    let store = TrustStore::new(&creds, now, 60_000, 16).unwrap();
    let hlc = Hlc::new(1_769_508_000_000, 3).unwrap();
    let hb = Header { kind: Kind::Heartbeat, sender: "pos-1".into(), counter: 42, term: 7, hlc };
    let enc = Envelope::seal(&hb, b"hello", &store).unwrap();
    let app = Header { kind: Kind::AppMessage, ..hb.clone() };
    let plain = Envelope::seal_with(&app, b"hello", &store, SealOpts { encrypt: false, attach_chain: false }, Limits::default()).unwrap();

    let cmd = Cmd::unsigned(crate::outbox::CommandId::new("pos-1.aaaaaaaaaaaaaaaaaaaaaaaaaa"), "pos-1".into(), "sale".into(), hlc.to_packed(), 1_769_508_000_000, b"{\"total\":12}".to_vec());
    let fields = cmd.fields().unwrap();
    let sig = command::sign_command(&pos_key, "demo-venue", &fields);
    let digest = command::digest(&fields, &sig);
    let receipt = Receipt::issue(&ca.cloud, &ca.cloud_chain, "demo-venue", now, &[(cmd.id.as_str().into(), digest)]).unwrap();
    let revoked = ca.chain("pos-2", Role::Device).0[0].fp();
    let crl_root = Crl::issue(&ca.root, None, "demo-venue", 1, now, &[revoked]).unwrap();
    let crl_admin = Crl::issue(&admin_key, Some(&admin_chain), "demo-venue", 1, now, &[revoked]).unwrap();

    let next_key = super::sha256(&[b"venuemesh test content key 2\0"]);
    let when = super::keyupdate::Schedule { epoch: ca.epoch + 1, issued_at: now, activate_at: now + 5_000, retire_at: now + 65_000 };
    let rcpt = [("pos-1".to_string(), pos_key.verifying_key()), ("ipad-admin".to_string(), admin_key.verifying_key())];
    let ku = super::KeyUpdate::issue(&admin_key, Some(&admin_chain), "demo-venue", when, &next_key, &rcpt, [0x24; 32]).unwrap();

    let code = InviteCode::parse("ABCD-EFGH-IJKL-MNOP-QRST").unwrap();
    let req = PairRequest { venue: "demo-venue".into(), invite_id: code.invite_id(), device: "tab-7".into(), public_key: joiner.verifying_key().to_bytes(), created_at: now };
    let mut bundle = ca.bundle_with("tab-7", admin_issued.clone());
    bundle.crl = None;
    let resp = seal_response(&code, &req, &bundle, &mut CryptoRng::new([0x42; 32])).unwrap();

    json!({
        "description": "venuemesh protocol v2 byte vectors (PROTOCOL.md Parts 2, 4 and 6). Hex unless noted. Keys are test keys: sha256('venuemesh test key\\0' || label) as Ed25519 secret seeds.",
        "venue": "demo-venue",
        "now_ms": now,
        "keys": {
            "root_secret": hex(&ca.root.to_bytes()),
            "root_public": hex(&ca.root.verifying_key().to_bytes()),
            "root_fp": hex(&super::fingerprint(&ca.root.verifying_key().to_bytes())),
            "cloud_secret": hex(&ca.cloud.to_bytes()),
            "cloud_public": hex(&ca.cloud.verifying_key().to_bytes()),
            "pos1_secret": hex(&pos_key.to_bytes()),
            "pos1_public": hex(&pos_key.verifying_key().to_bytes()),
            "admin_secret": hex(&admin_key.to_bytes()),
            "tab7_secret": hex(&joiner.to_bytes()),
            "content_key_epoch": ca.epoch,
            "content_key": hex(&ca.content_key),
            "pos1_body_subkey": hex(&content::subkey(&ca.content_key, "pos-1")),
        },
        "cert_device_pos1": hex(&creds.bundle.chain.0[0].encode()),
        "chain_device_pos1": hex(&creds.bundle.chain.encode()),
        "chain_cloud": hex(&ca.cloud_chain.encode()),
        "chain_admin": hex(&admin_chain.encode()),
        "chain_admin_issued_tab7": hex(&admin_issued.encode()),
        "envelope_heartbeat_encrypted_with_chain": {
            "header": {"kind": 1, "sender": "pos-1", "counter": 42, "term": 7, "hlc": hex(&hlc.to_packed().to_be_bytes())},
            "plaintext_body": hex(b"hello"),
            "bytes": hex(&enc),
        },
        "envelope_app_message_plain_no_chain": {
            "header": {"kind": 8, "sender": "pos-1", "counter": 42, "term": 7, "hlc": hex(&hlc.to_packed().to_be_bytes())},
            "bytes": hex(&plain),
        },
        "command": {
            "fields": hex(&fields),
            "origin_sig": hex(&sig),
            "digest": hex(&digest),
        },
        // Part 4 §2: the tentative copy of `command` (no cert table), its
        // SyncAck state 3, and the origin's Confirm (committed) — issue #15.
        "replication_tentative": {
            "tentative_body": hex(&{
                let mut c = cmd.clone();
                c.origin_sig = sig;
                crate::replication::RepMsg::Tentative(vec![std::rc::Rc::new(c)]).encode().unwrap()
            }),
            "sync_ack_tentative_body": hex(&crate::replication::RepMsg::SyncAck(vec![(cmd.id.clone(), crate::replication::AckState::Tentative)]).encode().unwrap()),
            "confirm_committed_body": hex(&crate::replication::RepMsg::Confirm(vec![(cmd.id.clone(), true)]).encode().unwrap()),
            "confirm_withdrawn_body": hex(&crate::replication::RepMsg::Confirm(vec![(cmd.id.clone(), false)]).encode().unwrap()),
        },
        "receipt": hex(&receipt.raw),
        "crl_root_signed": hex(&crl_root.raw),
        "crl_admin_signed": hex(&crl_admin.raw),
        "crl_revoked_fp": hex(&revoked),
        "key_update": {
            "ephemeral_secret": hex(&[0x24; 32]),
            "new_epoch": ca.epoch + 1,
            "new_content_key": hex(&next_key),
            "pos1_x25519_public": hex(pos_key.verifying_key().to_montgomery().as_bytes()),
            "pos1_x25519_secret": hex(&pos_key.to_scalar_bytes()),
            "bytes": hex(&ku.raw),
        },
        "pairing": {
            "code": code.display(),
            "invite_id": code.invite_id(),
            "request": hex(&req.seal(&code).unwrap()),
            "response_nonce_rng_seed": hex(&[0x42; 32]),
            "response": hex(&resp),
            "bundle_binary": hex(&bundle.encode().unwrap()),
        },
        "bundle_json_pos1": creds.bundle.to_json(),
    })
}

#[test]
fn protocol_v2_vectors_match_the_file() {
    let now = vectors();
    let text = serde_json::to_string_pretty(&now).unwrap() + "\n";
    if std::env::var_os("VENUEMESH_WRITE_VECTORS").is_some() {
        std::fs::write(PATH, &text).unwrap();
        return;
    }
    let file: Value = serde_json::from_str(&std::fs::read_to_string(PATH).expect("tests/vectors/protocol-v2.json")).unwrap();
    assert_eq!(file, now, "the wire format changed: update PROTOCOL.md and regenerate with VENUEMESH_WRITE_VECTORS=1");
}

/// The file's values also verify as what they claim (so the file is
/// usable by others even if this code changed in a compatible way).
#[test]
fn vectors_verify_independently() {
    let v: Value = serde_json::from_str(&std::fs::read_to_string(PATH).unwrap()).unwrap();
    let unhex = |s: &Value| -> Vec<u8> {
        let s = s.as_str().unwrap();
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    };
    let ca = TestCa::new("demo-venue");
    let now = v["now_ms"].as_u64().unwrap();
    let mut store = TrustStore::new(&ca.credentials("observer"), now, 60_000, 16).unwrap();
    store.learn_chain(&unhex(&v["chain_device_pos1"]), now).unwrap();
    let env = Envelope::open(&unhex(&v["envelope_heartbeat_encrypted_with_chain"]["bytes"]), &mut store, now).unwrap();
    assert_eq!(env.body, b"hello");
    assert!(env.encrypted);
    let plain = Envelope::open(&unhex(&v["envelope_app_message_plain_no_chain"]["bytes"]), &mut store, now).unwrap();
    assert!(!plain.encrypted && plain.body == b"hello");
    let r = store.verify_receipt(&unhex(&v["receipt"]), now).unwrap();
    let digest: [u8; 32] = unhex(&v["command"]["digest"]).try_into().unwrap();
    assert!(r.covers("pos-1.aaaaaaaaaaaaaaaaaaaaaaaaaa", &digest));
    assert_eq!(store.apply_crl(&unhex(&v["crl_admin_signed"]), now), Ok(1));
    // The KEY_UPDATE opens for pos-1 with pos-1's key only.
    let ku = &v["key_update"];
    let mut pos1 = TrustStore::new(&ca.credentials("pos-1"), now, 60_000, 16).unwrap();
    assert_eq!(pos1.apply_key_update(&unhex(&ku["bytes"]), now), Ok(true));
    let epoch = ku["new_epoch"].as_u64().unwrap() as u8;
    assert_eq!(pos1.content().get(epoch).map(|k| k.to_vec()), Some(unhex(&ku["new_content_key"])));
    assert_eq!(store.apply_key_update(&unhex(&ku["bytes"]), now), Ok(false), "the observer is no recipient");
}
