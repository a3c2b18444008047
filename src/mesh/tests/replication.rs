//! Replication through whole `MeshNode`s and the in-memory broker: signed
//! envelopes on `dev/{d}/rep|ack`, the hub's upload on `up`, a fake ingest
//! answering on `cloud`.

use super::*;
use crate::outbox::CommandId;
use crate::replication::{self as rep, Cmd, RepMsg};
use std::rc::Rc;

fn cmd(id: &str, origin: &str) -> Rc<Cmd> {
    Rc::new(Cmd { id: CommandId::new(id), origin: origin.into(), topic: "sale".into(), hlc: 0, created_at: WALL0, payload: b"{\"total\":12}".to_vec(), origin_sig: [0; 64] })
}

/// The uploads published on `vm/{venue}/up` so far, decoded.
fn uploads(net: &Net) -> Vec<(String, Vec<Rc<Cmd>>)> {
    net.log
        .iter()
        .filter(|(_, _, topic, _, _)| *topic == topics::upstream(VENUE))
        .map(|(_, _, _, payload, _)| {
            let env = open(payload).expect("a valid envelope");
            assert_eq!(env.header.kind, Kind::Upload);
            match rep::wire::decode(&env.body).unwrap() {
                RepMsg::Upload { cmds, .. } => (env.header.sender, cmds),
                other => panic!("not an upload: {other:?}"),
            }
        })
        .collect()
}

#[test]
fn a_command_is_peer_acked_by_a_majority_then_cloud_acked_everywhere() {
    let mut net = elected(7);
    let now = net.now;
    net.devs[1].node.as_mut().unwrap().handle_committed(vec![cmd("pos-1-a", "pos-1")], now);
    net.drain(1);
    net.run_until(now + 200);
    assert_eq!(net.acks(1, true), vec!["pos-1-a".to_string()], "the origin reaches the quorum");
    let holders = net.node(1).replicator().holders("pos-1-a").unwrap();
    assert_eq!(holders, vec!["ipad-1".to_string(), "kiosk-1".to_string()], "replicated to the hub and the next best");

    // The hub (kiosk-1) uploads it at once: it has been hub longer than the drain interval… or not,
    // but a new hub drains at once and the command arrived after that.
    let up = uploads(&net);
    assert_eq!(up.len(), 1, "{up:?}");
    assert_eq!(up[0].0, "kiosk-1");
    assert_eq!(up[0].1.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(), vec!["pos-1-a"]);
    assert_ne!(up[0].1[0].origin_sig, [0; 64], "signed by its origin");

    // The ingest stores it and answers on `cloud`; every holder marks it.
    let env = net.ingest_ack(&up[0].1);
    for i in 0..3 {
        net.inject(i, &topics::cloud(VENUE), env.clone(), false);
    }
    net.run_until(net.now + 100);
    for i in 0..3 {
        assert_eq!(net.acks(i, false), vec!["pos-1-a".to_string()], "device {i}");
        assert_eq!(net.node(i).replicator().stats().held, 0);
        assert_accounted(&net.node(i).stats());
    }
}

#[test]
fn a_forged_or_misaddressed_replication_message_is_refused() {
    let mut net = elected(8);
    let body = RepMsg::Replicate(vec![cmd("x-1", "pos-1")]).encode().unwrap();
    let hlc = crate::hlc::Hlc::new(WALL0 + net.now, 0).unwrap();
    let header = Header { kind: Kind::ReplicateCommand, sender: "pos-1".into(), counter: u64::MAX / 2, term: 0, hlc };
    let other = TrustStore::new(&TestCa::with_label(VENUE, "other").credentials("pos-1"), WALL0, 60_000, 16).unwrap();
    net.inject(0, &topics::replicate(VENUE, "kiosk-1"), Envelope::seal(&header, &body, &other).unwrap(), false);
    // Right key, but addressed to another device.
    net.inject(0, &topics::replicate(VENUE, "ipad-1"), Envelope::seal(&header, &body, &store_of("pos-1")).unwrap(), false);
    // Right key and address, wrong kind for the topic.
    let h2 = Header { kind: Kind::SyncAck, counter: u64::MAX / 2 + 1, ..header.clone() };
    net.inject(0, &topics::replicate(VENUE, "kiosk-1"), Envelope::seal(&h2, &body, &store_of("pos-1")).unwrap(), false);
    net.run_until(net.now + 100);
    assert!(net.devs[0].rep.is_empty());
    assert_eq!(net.node(0).replicator().stats().storing + net.node(0).replicator().stats().held, 0);
    let s = net.node(0).stats();
    assert_eq!((s.envelope.bad_signature, s.counters.bad_topic, s.counters.kind_mismatch), (1, 1, 1), "{s:#?}");
    assert_accounted(&s);
}

/// Issue #15 gap: the holders of another origin's command reload after the
/// origin has gone for good, with no trust record (evicted, or never
/// written): the command must still reach the ingest, which stores only
/// commands their origin signed. Restored from the stored records, so it
/// fails when a record loses the origin signature or chain.
#[test]
fn a_replica_reaches_the_ingest_after_its_holders_reload_with_the_origin_gone() {
    let mut net = elected(9);
    let origin = net.devs.iter().position(|d| d.id == "pos-1").unwrap();
    net.commit(origin, "pos-1-a");
    net.run_until(net.now + 200);
    assert_eq!(net.acks(origin, true), vec!["pos-1-a".to_string()]);
    // Nobody read the first upload (no ingest yet). The origin goes away,
    // its Will clears its retained presence (which carries its chain).
    net.crash(origin);
    net.run_until(net.now + 1_000);
    let holders: Vec<usize> = (0..3).filter(|&i| i != origin).collect();
    for &i in &holders {
        assert_eq!(net.devs[i].replicas.len(), 1, "{} holds a replica", net.devs[i].id);
        net.crash(i);
        net.devs[i].trust = None;
    }
    net.ingest = Some(BTreeMap::new());
    for &i in &holders {
        net.start(i);
    }
    net.run_until(net.now + 10_000);
    let stored = net.ingest.as_ref().unwrap();
    assert!(stored.get("pos-1-a").is_some_and(|n| *n >= 1), "the ingest stored it: {stored:?}");
    for &i in &holders {
        assert_eq!(net.acks(i, false), vec!["pos-1-a".to_string()], "{} saw the receipt", net.devs[i].id);
        assert_eq!(net.node(i).trust().stats().bad_origin_sig, 0);
    }
}

/// Issue #17's flake: a device that did not hold a command when its
/// CLOUD_ACK went by, and is given a copy afterwards (its origin was cut off
/// from the broker, came back and restored the replication factor), must not
/// keep that copy at `peer_ack` until its re-offer (60 s): it answers "the
/// cloud has it" with the receipt at once and stores nothing.
#[test]
fn a_copy_placed_after_its_cloud_ack_went_by_is_acked_at_once() {
    let mut devs = trio();
    devs.push(("phone-1", info(DeviceKind::Phone, None)));
    let mut net = Net::new(10, devs);
    net.start_all();
    net.until(3_000, |n| n.agreed(&[0, 1, 2, 3]).is_some()).expect("a hub");
    let origin = net.devs.iter().position(|d| d.id == "pos-1").unwrap();
    let phone = net.devs.iter().position(|d| d.id == "phone-1").unwrap();
    net.commit(origin, "pos-1-a");
    net.run_until(net.now + 200);
    let up = uploads(&net);
    assert_eq!(up.len(), 1, "{up:?}");
    let signed = up[0].1[0].clone();
    assert!(net.devs[phone].replicas.is_empty(), "the phone is not among the first holders");
    // The cloud's receipt goes by on `cloud` while the phone holds nothing.
    let env = net.ingest_ack(&up[0].1);
    net.inject(phone, &topics::cloud(VENUE), env, false);
    // Later its origin places a copy on the phone.
    let body = RepMsg::Replicate(vec![signed]).encode().unwrap();
    let hlc = crate::hlc::Hlc::new(WALL0 + net.now, 0).unwrap();
    let header = Header { kind: Kind::ReplicateCommand, sender: "pos-1".into(), counter: u64::MAX / 2, term: 0, hlc };
    let from = net.log.len();
    net.inject(phone, &topics::replicate(VENUE, "phone-1"), Envelope::seal(&header, &body, &store_of("pos-1")).unwrap(), false);
    net.run_until(net.now + 100);
    assert!(net.devs[phone].replicas.is_empty(), "no copy stored");
    let answer = net.log[from..]
        .iter()
        .filter(|(_, by, topic, _, _)| *by == phone && *topic == topics::ack(VENUE, "pos-1"))
        .map(|(_, _, _, payload, _)| rep::wire::decode(&open(payload).expect("a valid envelope").body).unwrap())
        .next();
    assert_eq!(answer, Some(RepMsg::SyncAck(vec![(CommandId::new("pos-1-a"), rep::AckState::CloudAcked)])), "answered with the receipt");
    assert_eq!(net.node(phone).trust().stats().bad_receipt, 0);
}
