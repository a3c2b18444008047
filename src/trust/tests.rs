//! Unit tests of the trust formats; byte vectors are in
//! `tests/vectors/protocol-v2.json` (checked by `vectors.rs` in the crate's
//! test directory).

use super::cert::*;
use super::crl::*;
use super::pairing::*;
use super::receipt::*;
use super::testca::{key_for, TestCa, NOT_BEFORE};
use super::*;

const NOW: u64 = NOT_BEFORE + 1_000;

fn ca() -> TestCa {
    TestCa::new("shop-1")
}

fn anchor(ca: &TestCa) -> Anchor {
    Anchor::new(&ca.venue, &ca.root.verifying_key().to_bytes(), 60_000).unwrap()
}

#[test]
fn hkdf_rfc5869_case_1() {
    let ikm = [0x0bu8; 22];
    let salt: Vec<u8> = (0u8..=0x0c).collect();
    let info: Vec<u8> = (0xf0u8..=0xf9).collect();
    let mut okm = [0u8; 42];
    hkdf(&salt, &ikm, &info, &mut okm);
    let hex: String = okm.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(hex, "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865");
}

#[test]
fn root_chain_validates_and_every_tamper_fails() {
    let ca = ca();
    let a = anchor(&ca);
    let none = RevocationSet::default();
    let chain = ca.chain("pos-1", Role::Device);
    let id = a.validate(&chain, NOW, &none).unwrap();
    assert_eq!((id.role, id.subject.as_str()), (Role::Device, "pos-1"));
    assert_eq!(Chain::decode(&chain.encode()).unwrap(), chain);
    // Any byte of the encoded cert flipped: refused (never accepted as another cert).
    let bytes = chain.encode();
    for i in 3..bytes.len() {
        let mut b = bytes.clone();
        b[i] ^= 0x01;
        if let Ok(c) = Chain::decode(&b) {
            assert!(a.validate(&c, NOW, &none).is_err(), "flip at {i} accepted");
        }
    }
    // Another venue's root, another venue's cert.
    let other = TestCa::new("shop-2");
    assert_eq!(anchor(&other).validate(&chain, NOW, &none), Err(TrustError::WrongVenue));
    let mut c2 = other.chain("pos-1", Role::Device);
    c2.0[0].venue = "shop-1".into();
    assert_eq!(a.validate(&c2, NOW, &none), Err(TrustError::BadChain));
}

#[test]
fn validity_window_with_drift() {
    let ca = ca();
    let a = anchor(&ca);
    let pk = ca.device_key("pos-1").verifying_key().to_bytes();
    let c = Cert::issue(&ca.root, Role::Device, "shop-1", "pos-1", pk, NOW, NOW + 1000).unwrap();
    let chain = Chain(vec![c]);
    let none = RevocationSet::default();
    assert!(a.validate(&chain, NOW - 59_000, &none).is_ok());
    assert_eq!(a.validate(&chain, NOW - 61_000, &none), Err(TrustError::Expired));
    assert!(a.validate(&chain, NOW + 60_000, &none).is_ok());
    assert_eq!(a.validate(&chain, NOW + 62_000, &none), Err(TrustError::Expired));
}

#[test]
fn admin_chains_and_their_limits() {
    let ca = ca();
    let a = anchor(&ca);
    let none = RevocationSet::default();
    let admin_key = ca.device_key("ipad-admin");
    let admin = ca.chain("ipad-admin", Role::Admin);
    let pk = key_for("new").verifying_key().to_bytes();
    let leaf = Cert::issue(&admin_key, Role::Device, "shop-1", "new-1", pk, NOW, 0).unwrap();
    let chain = Chain(vec![leaf.clone(), admin.0[0].clone()]);
    assert_eq!(a.validate(&chain, NOW, &none).unwrap().fps.len(), 2);
    // An admin cannot issue admin or cloud certs.
    for role in [Role::Admin, Role::Cloud] {
        let bad = Cert::issue(&admin_key, role, "shop-1", "new-1", pk, NOW, 0).unwrap();
        assert_eq!(a.validate(&Chain(vec![bad, admin.0[0].clone()]), NOW, &none), Err(TrustError::BadChain));
    }
    // A plain device cannot issue at all.
    let dev_key = ca.device_key("pos-1");
    let dev = ca.chain("pos-1", Role::Device);
    let by_dev = Cert::issue(&dev_key, Role::Device, "shop-1", "new-1", pk, NOW, 0).unwrap();
    assert_eq!(a.validate(&Chain(vec![by_dev, dev.0[0].clone()]), NOW, &none), Err(TrustError::BadChain));
    // Revoking the admin revokes what it issued.
    let mut revoked = RevocationSet::default();
    revoked.merge(&[admin.0[0].fp()]);
    assert_eq!(a.validate(&chain, NOW, &revoked), Err(TrustError::Revoked));
}

#[test]
fn crl_root_and_admin_signed_union_never_shrinks() {
    let ca = ca();
    let a = anchor(&ca);
    let victim = ca.chain("pos-2", Role::Device).0[0].fp();
    let crl = Crl::issue(&ca.root, None, "shop-1", 1, NOW, &[victim]).unwrap();
    let back = Crl::decode(&crl.raw).unwrap();
    assert_eq!(back, crl);
    let mut set = RevocationSet::default();
    back.verify(&a, NOW, &set).unwrap();
    assert_eq!(set.merge(&back.revoked), 1);
    // An admin's list adds to it; an older or smaller one removes nothing.
    let admin = ca.chain("ipad-admin", Role::Admin);
    let other = [7u8; 8];
    let by_admin = Crl::issue(&ca.device_key("ipad-admin"), Some(&admin), "shop-1", 1, NOW, &[other]).unwrap();
    by_admin.verify(&a, NOW, &set).unwrap();
    set.merge(&by_admin.revoked);
    assert!(set.contains(&victim) && set.contains(&other));
    let empty = Crl::issue(&ca.root, None, "shop-1", 0, NOW, &[]).unwrap();
    set.merge(&empty.revoked);
    assert_eq!(set.len(), 2);
    // A device cannot revoke; a forged root list fails.
    let dev = ca.chain("pos-1", Role::Device);
    let by_dev = Crl::issue(&ca.device_key("pos-1"), Some(&dev), "shop-1", 9, NOW, &[admin.0[0].fp()]).unwrap();
    assert_eq!(by_dev.verify(&a, NOW, &set), Err(TrustError::WrongRole));
    let forged = Crl::issue(&ca.device_key("pos-1"), None, "shop-1", 9, NOW, &[victim]).unwrap();
    assert_eq!(forged.verify(&a, NOW, &set), Err(TrustError::BadSignature));
}

#[test]
fn receipts_only_from_the_cloud() {
    let ca = ca();
    let a = anchor(&ca);
    let none = RevocationSet::default();
    let d = [3u8; 32];
    let r = Receipt::issue(&ca.cloud, &ca.cloud_chain, "shop-1", NOW, &[("pos-1.abc".into(), d)]).unwrap();
    let back = Receipt::decode(&r.raw).unwrap();
    back.verify(&a, NOW, &none).unwrap();
    assert!(back.covers("pos-1.abc", &d));
    assert!(!back.covers("pos-1.abc", &[4u8; 32]) && !back.covers("pos-1.abd", &d));
    // A device (even with a valid cert) cannot make one.
    let dev = ca.chain("pos-1", Role::Device);
    let forged = Receipt::issue(&ca.device_key("pos-1"), &dev, "shop-1", NOW, &[("pos-1.abc".into(), d)]).unwrap();
    assert_eq!(forged.verify(&a, NOW, &none), Err(TrustError::WrongRole));
    // Claiming the cloud's chain without its key.
    let stolen = Receipt::issue(&ca.device_key("pos-1"), &ca.cloud_chain, "shop-1", NOW, &[("pos-1.abc".into(), d)]).unwrap();
    assert_eq!(stolen.verify(&a, NOW, &none), Err(TrustError::BadSignature));
    let mut bent = r.raw.clone();
    bent[20] ^= 1;
    assert!(Receipt::decode(&bent).and_then(|x| x.verify(&a, NOW, &none)).is_err());
}

#[test]
fn body_encryption_per_sender_subkey() {
    let k = [9u8; 32];
    let (ka, kb) = (content::subkey(&k, "pos-1"), content::subkey(&k, "pos-2"));
    assert_ne!(ka, kb);
    let mut body = b"sale 42".to_vec();
    content::seal(&ka, 5, b"hdr", &mut body);
    assert_eq!(body.len(), 7 + content::TAG_LEN);
    let ct = body.clone();
    content::open(&ka, 5, b"hdr", &mut body).unwrap();
    assert_eq!(body, b"sale 42");
    for (key, ctr, aad) in [(&kb, 5, &b"hdr"[..]), (&ka, 6, b"hdr"), (&ka, 5, b"hdx")] {
        let mut b = ct.clone();
        assert_eq!(content::open(key, ctr, aad, &mut b), Err(TrustError::BadBody));
    }
    let mut keys = ContentKeys::new(1, k);
    assert!(keys.rotate(2, [8u8; 32]));
    assert!(keys.get(1).is_some() && keys.get(2).is_some() && keys.epoch() == 2);
    keys.rotate(3, [7u8; 32]);
    assert!(keys.get(1).is_none());
}

#[test]
fn command_signatures_bind_origin_venue_and_fields() {
    let key = key_for("pos-1");
    let pk = key.verifying_key();
    let sig = command::sign_command(&key, "shop-1", b"fields");
    assert!(command::verify_command(&pk, "shop-1", b"fields", &sig));
    assert!(!command::verify_command(&pk, "shop-2", b"fields", &sig));
    assert!(!command::verify_command(&pk, "shop-1", b"fieldz", &sig));
    assert!(!command::verify_command(&key_for("pos-2").verifying_key(), "shop-1", b"fields", &sig));
    assert_ne!(command::digest(b"fields", &sig), command::digest(b"fieldz", &sig));
}

#[test]
fn pairing_round_trip_and_refusals() {
    let ca = ca();
    let admin_creds = ca.credentials_as("ipad-admin", Role::Admin);
    let mut rng = CryptoRng::new([5u8; 32]);
    let mut invite = Invite::new(&mut rng, NOW);
    let shown = invite.code.display();
    assert_eq!(shown.len(), 24);
    let code = InviteCode::parse(&shown.to_lowercase()).unwrap();
    assert_eq!(code, invite.code);
    let new_key = key_for("joiner");
    let req = PairRequest { venue: "shop-1".into(), invite_id: code.invite_id(), device: "tab-7".into(), public_key: new_key.verifying_key().to_bytes(), created_at: NOW };
    let sealed = req.seal(&code).unwrap();
    let adm = Admission { admin_key: &admin_creds.key, admin_bundle: &admin_creds.bundle, cert_lifetime_ms: 0 };
    // A request made with another code fails the MAC.
    let wrong = InviteCode::generate(&mut rng);
    let forged = PairRequest { invite_id: wrong.invite_id(), ..req.clone() }.seal(&wrong).unwrap();
    assert_eq!(admit(&adm, &mut invite.clone(), &forged, NOW, &mut rng).unwrap_err(), TrustError::BadBody);
    let mut expired = invite.clone();
    assert_eq!(admit(&adm, &mut expired, &sealed, NOW + INVITE_TTL_MS + 1, &mut rng).unwrap_err(), TrustError::BadCode);
    let (got, resp) = admit(&adm, &mut invite, &sealed, NOW, &mut rng).unwrap();
    assert_eq!(got, req);
    assert_eq!(admit(&adm, &mut invite, &sealed, NOW, &mut rng).unwrap_err(), TrustError::BadCode, "single use");
    let bundle = open_response(&code, &req, &resp).unwrap();
    let creds = Credentials::new(&new_key.to_bytes(), bundle, NOW, 0).unwrap();
    assert_eq!(creds.check(NOW, 0).unwrap().subject, "tab-7");
    // Tampered or for another key: refused.
    let mut bad = resp.clone();
    bad[20] ^= 1;
    assert_eq!(open_response(&code, &req, &bad).unwrap_err(), TrustError::BadBody);
    let other = PairRequest { public_key: key_for("x").verifying_key().to_bytes(), ..req.clone() };
    assert_eq!(open_response(&code, &other, &resp).unwrap_err(), TrustError::BadBody);
    assert!(InviteCode::parse("ABCD").is_err() && InviteCode::parse("ABCD-EFGH-IJKL-MNOP-QRS!").is_err());
}

#[test]
fn bundle_json_round_trip_and_credentials_check() {
    let ca = ca();
    let creds = ca.credentials("pos-1");
    let mut b = creds.bundle.clone();
    b.crl = Some(Crl::issue(&ca.root, None, "shop-1", 1, NOW, &[[1u8; 8]]).unwrap().raw);
    let json = b.to_json();
    assert_eq!(Bundle::from_json(&json).unwrap(), b);
    assert_eq!(Bundle::decode(&b.encode().unwrap()).unwrap(), b);
    assert!(Bundle::from_json("{\"venue\":\"shop-1\"}").is_err());
    assert!(Bundle::from_json("not json").is_err());
    // Another device's key with this bundle; a bundle naming another device.
    assert_eq!(Credentials::new(&key_for("x").to_bytes(), b.clone(), NOW, 0).unwrap_err(), TrustError::WrongSubject);
    let mut renamed = b.clone();
    renamed.device = "pos-9".into();
    assert_eq!(Credentials::new(&ca.device_key("pos-1").to_bytes(), renamed, NOW, 0).unwrap_err(), TrustError::WrongSubject);
    // A bundle whose own CRL revokes it.
    let mut self_revoked = b.clone();
    self_revoked.crl = Some(Crl::issue(&ca.root, None, "shop-1", 2, NOW, &[b.chain.0[0].fp()]).unwrap().raw);
    assert_eq!(Credentials::new(&ca.device_key("pos-1").to_bytes(), self_revoked, NOW, 0).unwrap_err(), TrustError::Revoked);
}

#[test]
fn store_caches_chains_and_counts_refusals() {
    let ca = ca();
    let mut s = TrustStore::new(&ca.credentials("pos-1"), NOW, 60_000, 3).unwrap();
    let c2 = ca.chain("pos-2", Role::Device).encode();
    assert_eq!(s.sender_identity("pos-3", None, NOW).unwrap_err(), TrustError::Malformed);
    assert_eq!(s.stats().unknown_sender, 1);
    // A valid chain attached under another sender's name.
    assert_eq!(s.sender_identity("pos-3", Some(&c2), NOW).unwrap_err(), TrustError::WrongSubject);
    assert_eq!(s.stats().bad_chain, 1);
    assert_eq!(s.sender_identity("pos-2", Some(&c2), NOW).unwrap().subject, "pos-2");
    assert!(s.sender_identity("pos-2", None, NOW).is_ok(), "cached");
    assert!(s.take_persist().is_some_and(|p| p.chains.len() == 2), "the cloud's and pos-2's");
    let fp = ca.chain("pos-2", Role::Device).0[0].fp();
    let crl = Crl::issue(&ca.root, None, "shop-1", 1, NOW, &[fp]).unwrap();
    assert_eq!(s.apply_crl(&crl.raw, NOW), Ok(1));
    assert_eq!(s.take_newly_revoked(), vec!["pos-2".to_string()]);
    assert_eq!(s.sender_identity("pos-2", None, NOW).unwrap_err(), TrustError::Revoked);
    assert_eq!(s.sender_identity("pos-2", Some(&c2), NOW).unwrap_err(), TrustError::Revoked);
    assert_eq!(s.stats().revoked, 2);
    // Persisted state restores the revocation in a fresh store.
    let state = s.state();
    let mut fresh = TrustStore::new(&ca.credentials("pos-1"), NOW, 60_000, 2).unwrap();
    fresh.restore(&state, NOW);
    assert!(fresh.revoked().contains(&fp));
    // The table is bounded (LRU).
    for d in ["a-1", "a-2", "a-3"] {
        s.sender_identity(d, Some(&ca.chain(d, Role::Device).encode()), NOW).unwrap();
    }
    assert!(s.stats().chains_evicted >= 1);
}
