//! Attacks by a device that holds a **valid certificate** of the venue (a
//! stolen or compromised iPad), through whole `MeshNode`s: it cannot make
//! any command `cloud_ack` that the cloud does not hold, cannot speak as
//! another device, and cannot get a command into the mesh in another
//! origin's name (issue #15). Each test fails on the v1 protocol.

use super::*;
use crate::envelope::SealOpts;
use crate::outbox::CommandId;
use crate::replication::{wire as rwire, AckState, Cmd, RepMsg};
use crate::trust::{command, Receipt};
use std::rc::Rc;

const ROGUE: &str = "rogue-1";

/// The rogue's envelope in `sender`'s name, its own chain attached.
fn rogue(kind: Kind, sender: &str, counter: u64, wall: u64, body: &[u8], attach: bool) -> Vec<u8> {
    let tx = store_of(ROGUE);
    let header = Header { kind, sender: sender.into(), counter, term: 0, hlc: crate::hlc::Hlc::new(wall, 0).unwrap() };
    let opts = SealOpts { encrypt: true, attach_chain: attach };
    Envelope::seal_with(&header, body, &tx, opts, crate::envelope::Limits::default()).unwrap()
}

/// An elected trio where pos-1's command `pos-1-a` reached the quorum and
/// every device knows the rogue's chain (it sent one heartbeat).
fn venue_with_a_sale(seed: u64) -> (Net, Rc<Cmd>) {
    let mut net = elected(seed);
    net.commit(1, "pos-1-a");
    net.run_until(net.now + 300);
    assert_eq!(net.acks(1, true), vec!["pos-1-a".to_string()]);
    let hb = Body::Heartbeat { term: None, hub: None, score: 1, queue_depth: 0, ended: false, direct_only: false }.encode().unwrap();
    let env = rogue(Kind::Heartbeat, ROGUE, 1, WALL0 + net.now, &hb, true);
    for i in 0..3 {
        net.inject(i, &topics::heartbeat(VENUE, ROGUE), env.clone(), false);
    }
    // The signed command as the hub holds it (what a real upload carries).
    let signed = net.uploads_seen().into_iter().flatten().find(|c| c.id.as_str() == "pos-1-a").expect("uploaded");
    (net, signed)
}

impl Net {
    fn uploads_seen(&self) -> Vec<Vec<Rc<Cmd>>> {
        self.log
            .iter()
            .filter(|(_, _, topic, _, _)| *topic == topics::upstream(VENUE))
            .filter_map(|(_, _, _, payload, _)| match rwire::decode(&open(payload).ok()?.body) {
                Ok(RepMsg::Upload { cmds, .. }) => Some(cmds),
                _ => None,
            })
            .collect()
    }
}

#[test]
fn a_forged_cloud_ack_marks_nothing() {
    let (mut net, signed) = venue_with_a_sale(21);
    let wall = WALL0 + net.now;
    let id = CommandId::new("pos-1-a");
    // 1. The v1 form: a list of ids, from a certified device.
    let v1 = RepMsg::CloudAck(vec![id.clone()]).encode().unwrap();
    // 2. A "receipt" signed with the rogue's own (device) key.
    let rogue_chain = ca().chain(ROGUE, Role::Device);
    let own = Receipt::issue(&ca().device_key(ROGUE), &rogue_chain, VENUE, wall, &[("pos-1-a".into(), signed.digest())]).unwrap();
    // 3. The cloud's chain without the cloud's key.
    let stolen = Receipt::issue(&ca().device_key(ROGUE), &ca().cloud_chain, VENUE, wall, &[("pos-1-a".into(), signed.digest())]).unwrap();
    // 4. A real receipt of the cloud for a *forged* command with the same id
    //    (the v1 "pre-sent acks for the next ids"): another digest.
    let real_for_forgery = Receipt::issue(&ca().cloud, &ca().cloud_chain, VENUE, wall, &[("pos-1-a".into(), [0xab; 32])]).unwrap();
    let bodies = [v1, rwire::encode_cloud_ack(&own.raw), rwire::encode_cloud_ack(&stolen.raw), rwire::encode_cloud_ack(&real_for_forgery.raw)];
    for (n, body) in bodies.iter().enumerate() {
        let env = rogue(Kind::CloudAck, ROGUE, 10 + n as u64, wall, body, false);
        for i in 0..3 {
            net.inject(i, &topics::cloud(VENUE), env.clone(), false);
        }
    }
    net.run_until(net.now + 500);
    for i in 0..3 {
        assert!(net.acks(i, false).is_empty(), "device {i} marked cloud_ack without the cloud");
        let s = net.node(i).stats();
        assert!(s.security.trust.bad_receipt >= 1, "{:?}", s.security);
        assert_accounted(&s);
    }
    // Control: the cloud's own receipt for the real command marks it.
    let ack = net.ingest_ack(&[signed]);
    for i in 0..3 {
        net.inject(i, &topics::cloud(VENUE), ack.clone(), false);
    }
    net.run_until(net.now + 200);
    for i in 0..3 {
        assert_eq!(net.acks(i, false), vec!["pos-1-a".to_string()], "device {i}");
    }
}

#[test]
fn a_forged_cloud_has_it_ack_marks_nothing() {
    let (mut net, signed) = venue_with_a_sale(22);
    let wall = WALL0 + net.now;
    let ack = vec![(CommandId::new("pos-1-a"), AckState::CloudAcked)];
    // Without a receipt (v1), and with one the rogue signed itself.
    let rogue_chain = ca().chain(ROGUE, Role::Device);
    let own = Receipt::issue(&ca().device_key(ROGUE), &rogue_chain, VENUE, wall, &[("pos-1-a".into(), signed.digest())]).unwrap();
    let bodies = [RepMsg::SyncAck(ack.clone()).encode().unwrap(), rwire::encode_sync_ack(&ack, &[Rc::new(own.raw)]).unwrap()];
    for (n, body) in bodies.iter().enumerate() {
        net.inject(1, &topics::ack(VENUE, "pos-1"), rogue(Kind::SyncAck, ROGUE, 20 + n as u64, wall, body, false), false);
    }
    net.run_until(net.now + 500);
    assert!(net.acks(1, false).is_empty(), "the origin marked cloud_ack on a peer's word");
    assert!(net.node(1).stats().security.trust.bad_receipt >= 2);
    // With the cloud's receipt, the same ack counts.
    let real = Receipt::issue(&ca().cloud, &ca().cloud_chain, VENUE, wall, &[("pos-1-a".into(), signed.digest())]).unwrap();
    let body = rwire::encode_sync_ack(&ack, &[Rc::new(real.raw)]).unwrap();
    net.inject(1, &topics::ack(VENUE, "pos-1"), rogue(Kind::SyncAck, ROGUE, 30, wall, &body, false), false);
    net.run_until(net.now + 200);
    assert_eq!(net.acks(1, false), vec!["pos-1-a".to_string()]);
}

#[test]
fn copy_requests_in_another_origins_name_are_refused() {
    let (mut net, _) = venue_with_a_sale(23);
    let wall = WALL0 + net.now;
    let forged = |id: &str, sig: [u8; 64]| {
        let c = Cmd::unsigned(CommandId::new(id), "pos-1".into(), "sale".into(), 0, wall, b"{\"total\":1}".to_vec());
        Rc::new(Cmd { origin_sig: sig, ..c })
    };
    // Signed by the rogue's key (its chain in the cert table), and unsigned.
    let c1 = forged("pos-1.forged1", [0; 64]);
    let sig = command::sign_command(&ca().device_key(ROGUE), VENUE, &c1.fields().unwrap());
    let batch = vec![forged("pos-1.forged1", sig), forged("pos-1.forged2", [0; 64])];
    let body = rwire::encode_with_certs(&RepMsg::Replicate(batch), &[ca().chain(ROGUE, Role::Device).encode()]).unwrap();
    let stored_before: usize = net.devs.iter().map(|d| d.outbox.len()).sum();
    net.inject(0, &topics::replicate(VENUE, "kiosk-1"), rogue(Kind::ReplicateCommand, ROGUE, 40, wall, &body, false), false);
    net.run_until(net.now + 3_000);
    let s = net.node(0).stats();
    assert_eq!(s.security.trust.bad_origin_sig, 2, "{:?}", s.security);
    assert_eq!(s.replication.replicas_stored, net.node(0).stats().replication.replicas_stored);
    assert!(net.node(0).replicator().holders("pos-1.forged1").is_none() && net.node(0).replicator().holders("pos-1.forged2").is_none());
    let uploaded: Vec<String> = net.uploads_seen().into_iter().flatten().map(|c| c.id.as_str().to_string()).collect();
    assert!(!uploaded.iter().any(|id| id.contains("forged")), "{uploaded:?}");
    assert_eq!(stored_before, net.devs.iter().map(|d| d.outbox.len()).sum::<usize>());
}

#[test]
fn a_heartbeat_in_another_devices_name_changes_nothing() {
    let (mut net, _) = venue_with_a_sale(24);
    let wall = WALL0 + net.now;
    let hb = Body::Heartbeat { term: None, hub: None, score: 2_000_000, queue_depth: 0, ended: false, direct_only: false }.encode().unwrap();
    // Counter 2^64-2 in pos-1's name: with the rogue's chain, and without.
    for attach in [true, false] {
        let env = rogue(Kind::Heartbeat, "pos-1", u64::MAX - 1, wall, &hb, attach);
        net.inject(0, &topics::heartbeat(VENUE, "pos-1"), env, false);
    }
    let before = net.node(0).stats();
    net.run_until(net.now + 2_000);
    let s = net.node(0).stats();
    assert_eq!(s.security.trust.bad_chain, 1, "the rogue's chain names another device");
    assert!(s.security.trust.bad_signature >= 1, "pos-1's key does not verify the rogue's signature");
    // pos-1's own messages still flow: nothing was dropped as a replay.
    assert_eq!(s.envelope.replays, 0);
    assert!(s.envelope.accepted > before.envelope.accepted);
    assert!(s.peers.iter().any(|p| p.device == "pos-1" && p.score < 2_000_000));
    assert_accounted(&s);
}

#[test]
fn a_revoked_device_is_ignored_from_the_moment_the_list_arrives() {
    let (mut net, _) = venue_with_a_sale(25);
    let hb = Body::Heartbeat { term: None, hub: None, score: 5, queue_depth: 0, ended: false, direct_only: false }.encode().unwrap();
    // The rogue keeps beating; every device sees it as a peer.
    for c in 2..5 {
        let env = rogue(Kind::Heartbeat, ROGUE, c, WALL0 + net.now, &hb, true);
        for i in 0..3 {
            net.inject(i, &topics::heartbeat(VENUE, ROGUE), env.clone(), false);
        }
        net.run_until(net.now + 100);
    }
    assert!((0..3).all(|i| net.node(i).stats().peers.iter().any(|p| p.device == ROGUE)));
    // The CA publishes a list revoking its key (retained on `crl`).
    let fp = ca().chain(ROGUE, Role::Device).0[0].fp();
    let crl = crate::trust::Crl::issue(&ca().root, None, VENUE, 1, WALL0 + net.now, &[fp]).unwrap();
    // A list signed by the rogue itself is refused first.
    let forged = crate::trust::Crl::issue(&ca().device_key(ROGUE), None, VENUE, 2, WALL0 + net.now, &[ca().chain("kiosk-1", Role::Device).0[0].fp()]).unwrap();
    for i in 0..3 {
        net.inject(i, &topics::crl(VENUE), forged.raw.clone(), true);
        net.inject(i, &topics::crl(VENUE), crl.raw.clone(), true);
    }
    for i in 0..3 {
        let s = net.node(i).stats();
        assert!(s.peers.iter().all(|p| p.device != ROGUE), "device {i} still counts the revoked device");
        assert_eq!((s.security.trust.crls_applied, s.security.trust.bad_crl), (1, 1));
        assert!(net.node(i).trust().revoked().contains(&fp));
    }
    let env = rogue(Kind::Heartbeat, ROGUE, 10, WALL0 + net.now, &hb, true);
    for i in 0..3 {
        net.inject(i, &topics::heartbeat(VENUE, ROGUE), env.clone(), false);
    }
    net.run_until(net.now + 1_000);
    for i in 0..3 {
        let s = net.node(i).stats();
        assert!(s.security.trust.revoked >= 1 && s.peers.iter().all(|p| p.device != ROGUE));
        assert_accounted(&s);
    }
    // The real devices are untouched, and a restart keeps the revocation.
    assert_eq!(net.agreed(&[0, 1, 2]).map(|t| t.hub), Some("kiosk-1".into()));
    net.crash(2);
    net.start(2);
    net.run_until(net.now + 1_000);
    assert!(net.node(2).trust().revoked().contains(&fp), "restored from the persisted trust record");
}

/// Trust material crosses data channels (PROTOCOL.md Part 6 §7): with the
/// broker stopped, a revocation list applied on one device reaches every
/// device, also one that shares no channel with it. Failed before TRUST
/// envelopes were sent and accepted on direct routes (nothing arrived).
#[test]
fn a_revocation_crosses_data_channels_with_the_broker_stopped() {
    let mut net = Net::channels_up(61);
    // The kiosk and the iPad lose their channel: the iPad hears the kiosk
    // only through the pos.
    net.kill_rtc(0, 2);
    net.broker_down();
    net.run_until(net.now + 1_000);
    let fp = ca().chain(ROGUE, Role::Device).0[0].fp();
    let crl = crate::trust::Crl::issue(&ca().root, None, VENUE, 1, WALL0 + net.now, &[fp]).unwrap();
    let now = net.now;
    assert_eq!(net.devs[0].node.as_mut().unwrap().apply_crl(&crl.raw, now, WALL0 + now), Ok(1));
    net.drain(0);
    net.run_until(net.now + 500);
    for i in 0..3 {
        assert!(net.node(i).trust().revoked().contains(&fp), "device {i} did not get the list");
        assert_eq!(net.node(i).stats().security.trust.crls_applied, 1);
        assert!(!net.node(i).stats().transport_up);
        assert_accounted(&net.node(i).stats());
    }
    // The rogue's heartbeat on a direct route is now refused everywhere.
    let hb = Body::Heartbeat { term: None, hub: None, score: 5, queue_depth: 0, ended: false, direct_only: false }.encode().unwrap();
    let env = rogue(Kind::Heartbeat, ROGUE, 3, WALL0 + net.now, &hb, true);
    for i in 0..3 {
        let before = net.node(i).stats().security.trust.revoked;
        let now = net.now;
        net.devs[i].node.as_mut().unwrap().handle_tab_frame(&env, now, WALL0 + now);
        assert_eq!(net.node(i).stats().security.trust.revoked, before + 1);
    }
}

/// Content key rotation without a flag day (PROTOCOL.md Part 6 §6): a
/// KEY_UPDATE reaching one device on the broker and another on a data
/// channel (the third through a relay) moves the venue to the new epoch
/// while commands keep reaching the quorum; the old epoch is dropped after
/// the grace period, and a device the update does not name reads nothing
/// sealed after the activation.
#[test]
fn a_key_rotation_keeps_commands_flowing_and_shuts_out_a_device_it_does_not_name() {
    use crate::trust::keyupdate::{KeyUpdate, Schedule};
    let mut net = Net::channels_up(62);
    let old = ca().epoch;
    let names = ["kiosk-1", "pos-1", "ipad-1"];
    // "observer" stands for the ingest (the tests' fake ingest opens uploads as it).
    let mut rcpt: Vec<_> = names.iter().chain(&["observer"]).map(|d| (d.to_string(), ca().device_key(d).verifying_key())).collect();
    rcpt.push((CLOUD_ID.to_string(), ca().cloud.verifying_key()));
    let wall = WALL0 + net.now;
    let when = Schedule { epoch: old + 1, issued_at: wall, activate_at: wall + 1_000, retire_at: wall + 3_000 };
    let ku = KeyUpdate::issue(&ca().root, None, VENUE, when, &[0x5a; 32], &rcpt, [3u8; 32]).unwrap();
    super::OBSERVER_KEYS.with(|k| k.borrow_mut().push(ku.raw.clone()));
    // The pos gets it retained from the broker; it relays it on its channels.
    net.inject(1, &topics::keys(VENUE), ku.raw.clone(), true);
    net.run_until(net.now + 200);
    for i in 0..3 {
        let keys = net.node(i).trust().content();
        assert_eq!((keys.epoch(), keys.newest()), (old, old + 1), "device {i}: holds the new epoch, sends under the old one");
    }
    let mut ids = Vec::new();
    for step in 0..40u64 {
        let i = (step % 3) as usize;
        let id = format!("{}-k{step}", names[i]);
        net.commit(i, &id);
        ids.push((i, id));
        net.run_until(net.now + 100);
    }
    // Past the hub's drain interval (30 s): the uploads go out under the new epoch.
    net.run_until(net.now + 31_000);
    let stored = net.ingest.clone().unwrap_or_default();


    for (i, id) in &ids {
        assert!(net.acks(*i, true).contains(id) || net.acks(*i, false).contains(id), "{id} never reached the quorum during the rotation");
        assert!(stored.contains_key(id), "{id} never reached the cloud");
        assert!(net.acks(*i, false).contains(id), "{id}: its origin never learned the cloud has it");
    }
    for i in 0..3 {
        let keys = net.node(i).trust().content();
        assert_eq!(keys.epoch(), old + 1, "device {i} sends under the new epoch");
        assert!(keys.get(old).is_none(), "device {i} dropped the old epoch after the grace period");
        let s = net.node(i).stats();
        assert_eq!(s.envelope.unknown_key, 0, "device {i}: no envelope lost to the rotation");
        assert_eq!(s.security.trust.key_updates, 1);
        assert_accounted(&s);
    }
    // An outsider with a valid certificate but not named: it keeps the old
    // key and cannot open a single body sealed after the activation.
    let mut outsider = store_of(ROGUE);
    assert_eq!(outsider.apply_key_update(&ku.raw, WALL0 + net.now), Ok(false));
    let late: Vec<_> = net.log.iter().filter(|(at, _, _, p, _)| WALL0 + *at > when.activate_at + 100 && p.first() == Some(&2)).collect();
    assert!(!late.is_empty());
    for (_, _, topic, payload, _) in late {
        let r = Envelope::open(payload, &mut outsider, WALL0 + net.now);
        assert_eq!(r.err(), Some(crate::envelope::EnvelopeError::UnknownKeyId(old + 1)), "{topic}");
    }
}

/// Who may send what (PROTOCOL.md Part 6 §2): a `cloud` certificate speaks
/// only CLOUD_ACK (and may relay TRUST material); anything else in its name
/// — a heartbeat or hub claim that would make the ingest a hub candidate,
/// a replication request — is dropped and counted `wrong_role`. A CLOUD_ACK
/// relayed by a device is fine: its receipt is what carries the authority.
#[test]
fn a_cloud_certificate_may_only_send_cloud_acks() {
    let mut net = elected(63);
    let cloud = store_of(CLOUD_ID);
    let wall = WALL0 + net.now;
    let hb = Body::Heartbeat { term: None, hub: None, score: u64::MAX >> 8, queue_depth: 0, ended: false, direct_only: false }.encode().unwrap();
    let claim = Body::HubClaim { term: 99, score: u64::MAX >> 8 }.encode().unwrap();
    let sends = [
        (Kind::Heartbeat, topics::heartbeat(VENUE, CLOUD_ID), hb),
        (Kind::HubClaim, topics::hub(VENUE), claim),
    ];
    for (n, (kind, topic, body)) in sends.into_iter().enumerate() {
        let header = Header { kind, sender: CLOUD_ID.into(), counter: 100 + n as u64, term: 99, hlc: crate::hlc::Hlc::new(wall, 0).unwrap() };
        let env = Envelope::seal_with(&header, &body, &cloud, SealOpts { encrypt: true, attach_chain: true }, crate::envelope::Limits::default()).unwrap();
        for i in 0..3 {
            net.inject(i, &topic, env.clone(), false);
        }
    }
    net.run_until(net.now + 1_000);
    for i in 0..3 {
        let s = net.node(i).stats();
        assert_eq!(s.security.trust.wrong_role, 2, "device {i}: {:?}", s.security.trust);
        assert!(s.peers.iter().all(|p| p.device != CLOUD_ID), "device {i} counts the cloud as a peer");
        assert_accounted(&s);
    }
    assert_eq!(net.agreed(&[0, 1, 2]).map(|t| t.number < 99), Some(true), "no term from the cloud's claim");
}

/// A cleared retained CRL or KEY_UPDATE (an empty payload) applies nothing
/// and, like every received message, is accounted for exactly once.
#[test]
fn cleared_retained_trust_objects_apply_nothing_and_are_accounted() {
    let mut net = elected(31);
    net.inject(0, &topics::crl(VENUE), Vec::new(), true);
    net.inject(0, &topics::keys(VENUE), Vec::new(), true);
    net.run_until(net.now + 100);
    let s = net.node(0).stats();
    assert_eq!(s.counters.hub_cleared, 2, "{s:#?}");
    assert_accounted(&s);
}

impl Net {
    /// Revocation lists published by devices on `vm/{venue}/crl` since `t`.
    fn crl_publishes(&self, since: u64) -> usize {
        self.log.iter().filter(|(at, from, topic, _, _)| *at >= since && *from != BROKER && *topic == topics::crl(VENUE)).count()
    }

    /// The fingerprints the broker's retained list names (none when absent).
    fn retained_crl(&self) -> Vec<crate::trust::Fingerprint> {
        self.retained.get(&topics::crl(VENUE)).map(|raw| crate::trust::Crl::decode(raw).unwrap().revoked).unwrap_or_default()
    }
}

/// Part 6 §4, keeping the retained list complete: an admin that revokes a
/// device while the broker is unreachable publishes the list when the broker
/// is back, so a device that was offline meanwhile (no data channel either)
/// learns it from the broker alone. Failed before `CrlSync`: the list was
/// published only if the broker was up at the moment of `revoke()`.
#[test]
fn a_revocation_made_while_the_broker_was_down_is_published_when_it_is_back() {
    let mut net = Net::new(64, trio());
    net.devs[0].admin = true;
    net.start_all();
    net.until(3_000, |n| n.agreed(&[0, 1, 2]).is_some()).expect("a hub");
    net.broker_down();
    net.run_until(net.now + 500);
    let now = net.now;
    let raw = net.devs[0].node.as_mut().unwrap().revoke("ipad-1", now, WALL0 + now).expect("an admin may revoke a known device");
    net.drain(0);
    let fp = crate::trust::Crl::decode(&raw).unwrap().revoked[0];
    assert_eq!(fp, ca().chain("ipad-1", Role::Device).0[0].fp());
    net.run_until(net.now + 2_000);
    assert!(!net.node(1).trust().revoked().contains(&fp), "no route carried it while the broker was down");
    let back = net.now;
    net.broker_up();
    net.run_until(net.now + 6_000);
    assert_eq!(net.retained_crl(), vec![fp], "the broker holds the list once it is back");
    assert_eq!(net.crl_publishes(back), 1);
    assert_eq!(net.node(0).stats().security.trust.crls_republished, 1);
    assert!(net.node(1).trust().revoked().contains(&fp), "the pos learnt it from the broker");
    assert!(net.node(1).stats().peers.iter().all(|p| p.device != "ipad-1"));
    // A device starting afresh (nothing restored) learns it from the broker too.
    net.crash(1);
    net.start_with(1, false);
    net.run_until(net.now + 1_000);
    assert!(net.node(1).trust().revoked().contains(&fp));
    assert_eq!(net.crl_publishes(back), 1, "a complete retained list is left alone");
    // Revoked while connected: published at once, once, and not counted as a republish.
    let (t, now) = (net.now, net.now);
    net.devs[0].node.as_mut().unwrap().revoke("pos-1", now, WALL0 + now).expect("pos-1 is known");
    net.drain(0);
    net.run_until(net.now + 6_000);
    assert_eq!(net.crl_publishes(t), 1);
    assert_eq!(net.retained_crl().len(), 2);
    assert_eq!(net.node(0).stats().security.trust.crls_republished, 1);
}

/// The broker's retained list replaced by an older valid one, then cleared
/// again and again (any device holding the venue's broker account can, a
/// stolen one too): a device holding a list that names more publishes it
/// back; the retained list only grows; each device publishes at most once
/// per 10 s however often it is cleared. Failed before `CrlSync` (the
/// retained list stayed old, then absent).
#[test]
fn an_older_or_cleared_retained_list_is_published_back_at_a_bounded_rate() {
    let mut net = elected(65);
    let a = ca().chain(ROGUE, Role::Device).0[0].fp();
    let b = ca().chain("thief-2", Role::Device).0[0].fp();
    let wall = WALL0 + net.now;
    let older = crate::trust::Crl::issue(&ca().root, None, VENUE, 1, wall, &[a]).unwrap();
    let newer = crate::trust::Crl::issue(&ca().root, None, VENUE, 2, wall, &[a, b]).unwrap();
    net.publish(BROKER, topics::crl(VENUE), newer.raw.clone(), true);
    net.run_until(net.now + 500);
    assert!((0..3).all(|i| net.node(i).trust().revoked().len() == 2));
    // Replaced by the older list: one device puts the newer back.
    let t = net.now;
    net.publish(BROKER, topics::crl(VENUE), older.raw.clone(), true);
    net.run_until(net.now + 3_000);
    assert_eq!(net.retained.get(&topics::crl(VENUE)), Some(&newer.raw));
    let after_replace = net.crl_publishes(t);
    assert!((1..=3).contains(&after_replace), "{after_replace} republishes");
    // Cleared every 500 ms for 20 s: at most one publish per device per 10 s.
    let t = net.now;
    for _ in 0..40 {
        net.publish(BROKER, topics::crl(VENUE), Vec::new(), true);
        net.run_until(net.now + 500);
    }
    let flood = net.crl_publishes(t);
    assert!(flood <= 3 * 3, "{flood} republishes in 20 s by 3 devices");
    assert!(flood >= 2, "{flood}: the cleared list was put back");
    net.run_until(net.now + 12_000);
    assert_eq!(net.retained.get(&topics::crl(VENUE)), Some(&newer.raw), "the newer list is retained again after the flood");
    for i in 0..3 {
        assert_accounted(&net.node(i).stats());
    }
}
