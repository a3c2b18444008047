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

mod key_update {
    use super::super::keyupdate::{epoch_newer, KeyUpdate, Schedule};
    use super::*;

    fn when(epoch: u8) -> Schedule {
        Schedule { epoch, issued_at: NOW, activate_at: NOW + 5_000, retire_at: NOW + 65_000 }
    }

    fn store(ca: &TestCa, device: &str, role: Role) -> TrustStore {
        TrustStore::new(&ca.credentials_as(device, role), NOW, 60_000, 16).unwrap()
    }

    #[test]
    fn each_recipient_unwraps_the_key_and_nobody_else_does() {
        let ca = ca();
        let a = anchor(&ca);
        let none = RevocationSet::default();
        let admin_chain = ca.chain("ipad-admin", Role::Admin);
        let admin = ca.device_key("ipad-admin");
        let new_key = [0x77u8; 32];
        let rcpt: Vec<(String, VerifyingKey)> = ["pos-1", "pos-2"].iter().map(|d| (d.to_string(), ca.device_key(d).verifying_key())).collect();
        let ku = KeyUpdate::issue(&admin, Some(&admin_chain), "shop-1", when(2), &new_key, &rcpt, [9u8; 32]).unwrap();
        ku.verify(&a, NOW, &none).unwrap();
        for d in ["pos-1", "pos-2"] {
            assert_eq!(ku.unwrap_for(d, &ca.device_key(d)), Ok(Some(new_key)), "{d}");
        }
        // Not a recipient; a recipient's entry with another key; a copied entry under another name.
        assert_eq!(ku.unwrap_for("pos-3", &ca.device_key("pos-3")), Ok(None));
        assert_eq!(ku.unwrap_for("pos-1", &ca.device_key("pos-3")), Err(TrustError::BadBody));
        let mut moved = ku.clone();
        moved.recipients = vec![("pos-2".into(), ku.recipients[0].1)]; // pos-1's entry
        assert_eq!(moved.unwrap_for("pos-2", &ca.device_key("pos-2")), Err(TrustError::BadBody));
        // The broker sees no key: the 32 key bytes appear nowhere in the update.
        assert!(!ku.raw.windows(32).any(|w| w == new_key));
        // Every flipped byte breaks the signature (or the framing).
        for i in 0..ku.raw.len() {
            let mut bad = ku.raw.clone();
            bad[i] ^= 0x01;
            assert!(KeyUpdate::decode(&bad).and_then(|k| k.verify(&a, NOW, &none)).is_err(), "byte {i}");
        }
        // Issuers: a device may not; another venue's root may not; the root and the cloud may.
        let dev = ca.chain("pos-1", Role::Device);
        let by_dev = KeyUpdate::issue(&ca.device_key("pos-1"), Some(&dev), "shop-1", when(2), &new_key, &rcpt, [9u8; 32]).unwrap();
        assert_eq!(by_dev.verify(&a, NOW, &none), Err(TrustError::WrongRole));
        let other = TestCa::with_label("shop-1", "intruder");
        let by_other = KeyUpdate::issue(&other.root, None, "shop-1", when(2), &new_key, &rcpt, [9u8; 32]).unwrap();
        assert_eq!(by_other.verify(&a, NOW, &none), Err(TrustError::BadSignature));
        let by_root = KeyUpdate::issue(&ca.root, None, "shop-1", when(2), &new_key, &rcpt, [9u8; 32]).unwrap();
        assert_eq!(by_root.verify(&a, NOW, &none), Ok(()));
        let by_cloud = KeyUpdate::issue(&ca.cloud, Some(&ca.cloud_chain), "shop-1", when(2), &new_key, &rcpt, [9u8; 32]).unwrap();
        assert_eq!(by_cloud.verify(&a, NOW, &none), Ok(()));
        let mut revoked = RevocationSet::default();
        revoked.merge(&[admin_chain.0[0].fp()]);
        assert_eq!(ku.verify(&a, NOW, &revoked), Err(TrustError::Revoked));
        let elsewhere = KeyUpdate::issue(&ca.root, None, "shop-2", when(2), &new_key, &rcpt, [9u8; 32]).unwrap();
        assert_eq!(elsewhere.verify(&a, NOW, &none), Err(TrustError::WrongVenue));
        assert!(KeyUpdate::decode(&ku.raw[..ku.raw.len() - 1]).is_err());
    }

    #[test]
    fn schedule_receives_at_once_sends_at_activation_and_retires_the_old_epoch() {
        let mut keys = ContentKeys::new(1, [1u8; 32]);
        assert!(keys.schedule(2, [2u8; 32], NOW + 5_000, NOW + 65_000, NOW));
        assert_eq!((keys.epoch(), keys.newest()), (1, 2), "sends under the old epoch before activation");
        assert!(keys.get(1).is_some() && keys.get(2).is_some(), "receives under both");
        assert!(!keys.schedule(2, [3u8; 32], 0, 0, NOW), "the same epoch again changes nothing");
        assert!(!keys.schedule(1, [3u8; 32], 0, 0, NOW), "an older epoch changes nothing");
        assert!(!keys.tick(NOW + 4_999));
        assert!(keys.tick(NOW + 5_000));
        assert_eq!(keys.epoch(), 2);
        assert!(keys.get(1).is_some(), "the old epoch stays for the grace period");
        assert!(keys.tick(NOW + 65_000));
        assert!(keys.get(1).is_none() && keys.get(2) == Some(&[2u8; 32]));
        // A newer update overtaking a scheduled one activates that one.
        assert!(keys.schedule(3, [3u8; 32], NOW + 100_000, 0, NOW + 70_000));
        assert!(keys.schedule(4, [4u8; 32], NOW + 100_000, 0, NOW + 70_000));
        assert_eq!((keys.epoch(), keys.newest()), (3, 4));
        // Epochs wrap: 0 is newer than 255, 200 is not newer than 100's successor run.
        assert!(epoch_newer(0, 255) && epoch_newer(2, 1) && !epoch_newer(1, 2) && !epoch_newer(1, 1) && !epoch_newer(129, 1));
    }

    #[test]
    fn an_admin_rotates_to_every_valid_peer_but_not_to_a_revoked_one() {
        let ca = ca();
        let mut admin = store(&ca, "ipad-admin", Role::Admin);
        let mut devices: Vec<TrustStore> = ["pos-1", "pos-2", "rogue"].iter().map(|d| store(&ca, d, Role::Device)).collect();
        for d in &devices {
            admin.learn_chain(d.chain_bytes(), NOW).unwrap();
            let _ = d;
        }
        for d in devices.iter_mut() {
            d.learn_chain(admin.chain_bytes(), NOW).unwrap();
        }
        let rogue_fp = ca.chain("rogue", Role::Device).0[0].fp();
        let crl = Crl::issue(&ca.root, None, "shop-1", 1, NOW, &[rogue_fp]).unwrap();
        admin.apply_crl(&crl.raw, NOW).unwrap();
        // A device may not rotate.
        assert_eq!(devices[0].issue_key_update((NOW, NOW, NOW), [5u8; 32], [6u8; 32]), Err(TrustError::WrongRole));
        let raw = admin.issue_key_update((NOW, NOW + 5_000, NOW + 65_000), [5u8; 32], [6u8; 32]).unwrap();
        let ku = KeyUpdate::decode(&raw).unwrap();
        assert_eq!(ku.epoch, ca.epoch + 1);
        assert!(ku.names("ipad-admin") && ku.names("pos-1") && ku.names("pos-2") && !ku.names("rogue"));
        assert!(ku.names(testca::CLOUD_ID), "the ingest must read the hub's uploads under the new epoch");
        assert_eq!(admin.content().newest(), ca.epoch + 1);
        for d in &mut devices[..2] {
            assert_eq!(d.apply_key_update(&raw, NOW), Ok(true));
            assert_eq!(d.apply_key_update(&raw, NOW), Ok(false), "a second copy changes nothing");
            assert_eq!(d.stats().key_updates, 1);
        }
        // The revoked device learns nothing: it has no new epoch.
        assert_eq!(devices[2].apply_key_update(&raw, NOW), Ok(false));
        assert_eq!(devices[2].stats().key_update_not_for_us, 1);
        assert!(devices[2].content().get(ca.epoch + 1).is_none());
        // After a restart the schedule comes back from the persisted update.
        let state = devices[0].take_persist().unwrap();
        let mut again = store(&ca, "pos-1", Role::Device);
        again.restore(&state, NOW + 1);
        assert_eq!((again.content().epoch(), again.content().newest()), (ca.epoch, ca.epoch + 1));
        again.tick_keys(NOW + 5_000);
        assert_eq!(again.content().epoch(), ca.epoch + 1);
        again.tick_keys(NOW + 65_000);
        assert!(again.content().get(ca.epoch).is_none());
        // A forged update (signed by the revoked device) is refused and counted.
        let rogue_chain = ca.chain("rogue", Role::Device);
        let forged = KeyUpdate::issue(&ca.device_key("rogue"), Some(&rogue_chain), "shop-1", when(9), &[0u8; 32], &[("pos-1".into(), ca.device_key("pos-1").verifying_key())], [1u8; 32]).unwrap();
        assert!(devices[1].apply_key_update(&forged.raw, NOW).is_err());
        assert_eq!(devices[1].stats().bad_key_update, 1);
    }
}
