//! The device mesh without a broker (`node/direct.rs`): election and
//! replication over data channels, through whole `MeshNode`s. A fake ingest
//! on the broker answers uploads, so the tests follow commands to
//! `cloud_ack` once the broker is back.

use super::routes::{meshed, rtc_up_everywhere};
use super::*;
use crate::outbox::CommandId;
use crate::replication::{Cmd, RepMsg};
use std::rc::Rc;

impl Net {
    /// The fake ingest: store by id, answer with a CLOUD_ACK on `cloud`.
    pub(super) fn ingest_upload(&mut self, payload: &[u8]) {
        let Ok(env) = Envelope::open(payload, &key()) else { return };
        let Ok(RepMsg::Upload { cmds, .. }) = crate::replication::wire::decode(&env.body) else { return };
        let stored = self.ingest.as_mut().expect("ingest on");
        let ids: Vec<CommandId> = cmds.iter().map(|c| c.id.clone()).collect();
        for id in &ids {
            *stored.entry(id.as_str().to_string()).or_insert(0) += 1;
        }
        self.ingest_counter += 1;
        let body = RepMsg::CloudAck(ids).encode().unwrap();
        let hlc = crate::hlc::Hlc::new(WALL0 + self.now, 0).unwrap();
        let header = Header { kind: Kind::CloudAck, sender: "ingest".into(), counter: self.ingest_counter, term: 0, hlc };
        let ack = Envelope::seal(&header, &body, &key()).unwrap();
        self.fan_out(BROKER, &topics::cloud(VENUE), &ack);
    }

    /// Device `i` commits its own command `id` (the outbox's `Enqueued`).
    fn commit(&mut self, i: usize, id: &str) {
        let now = self.now;
        let origin = self.devs[i].id.clone();
        let cmd = Rc::new(Cmd { id: CommandId::new(id), origin, topic: "sale".into(), hlc: 0, created_at: WALL0 + now, payload: b"{}".to_vec() });
        self.devs[i].outbox.insert(cmd.id.clone(), (cmd.clone(), false));
        self.devs[i].node.as_mut().unwrap().handle_committed(vec![cmd], now);
        self.drain(i);
    }

    /// Ids device `i` was told reached the quorum (`peer`) or the cloud,
    /// sorted, once each.
    pub(super) fn acks(&self, i: usize, peer: bool) -> Vec<String> {
        let mut ids: Vec<String> = self.devs[i]
            .rep
            .iter()
            .flat_map(|(_, o)| match o {
                Output::PeerAcked(ids) if peer => ids.clone(),
                Output::CloudAcked(ids) if !peer => ids.clone(),
                _ => Vec::new(),
            })
            .map(CommandId::into_string)
            .collect();
        ids.sort();
        ids.dedup();
        ids
    }

    /// Elected, in a room, with data channels between every pair.
    fn channels_up(seed: u64) -> Net {
        let mut net = meshed(seed);
        net.ingest = Some(BTreeMap::new());
        net.send_room(0, "open the channels");
        net.until(net.now + 5_000, rtc_up_everywhere).expect("data channels");
        net.run_until(net.now + 500);
        net
    }

    fn events_since(&self, i: usize, t: u64) -> impl Iterator<Item = &MeshEvent> {
        self.devs[i].events.iter().filter(move |(at, _)| *at >= t).map(|(_, e)| e)
    }
}

#[test]
fn without_the_broker_the_hub_stays_and_commands_reach_the_quorum_over_data_channels() {
    let mut net = Net::channels_up(41);
    let hub = net.agreed(&[0, 1, 2]).expect("a hub");
    let t0 = net.now;
    net.broker_down();
    // Far past the election's silence bound (900 ms here).
    net.run_until(t0 + 10_000);
    assert_eq!(net.agreed(&[0, 1, 2]), Some(hub.clone()), "the same hub in the same term");
    for i in 0..3 {
        let churn: Vec<_> = net
            .events_since(i, t0)
            .filter(|e| matches!(e, MeshEvent::PeerLeft { .. } | MeshEvent::LostHub { .. } | MeshEvent::HubChanged { .. }))
            .collect();
        assert!(churn.is_empty(), "device {i}: {churn:?}");
        assert!(net.node(i).is_reachable() && !net.node(i).stats().transport_up);
    }
    let mut ids: Vec<String> = (0..3).map(|i| format!("{}-c", net.devs[i].id)).collect();
    for (i, id) in ids.iter().enumerate() {
        net.commit(i, id);
    }
    net.run_until(net.now + 200);
    for (i, id) in ids.iter().enumerate() {
        assert_eq!(net.acks(i, true), vec![id.clone()], "device {i}: quorum over data channels");
        let s = net.node(i).stats();
        assert!(s.traffic.direct.msgs_in > 0 && s.traffic.direct.msgs_out > 0, "{:?}", s.traffic);
        assert_accounted(&s);
    }
    // The broker comes back: presence and the claim are published again,
    // the hub drains, every holder learns the cloud ack.
    net.broker_up();
    net.run_until(net.now + 2_000);
    ids.sort();
    for d in &net.devs {
        assert!(net.retained.contains_key(&topics::presence(VENUE, &d.id)), "{} announced again", d.id);
    }
    let claim = Envelope::open(&net.retained[&topics::hub(VENUE)], &key()).unwrap();
    assert_eq!(claim.header.sender, hub.hub);
    let stored = net.ingest.as_ref().unwrap();
    assert_eq!(stored.keys().cloned().collect::<Vec<_>>(), ids);
    for i in 0..3 {
        assert_eq!(net.acks(i, false), ids, "device {i}: cloud acks for everything it holds");
    }
}

#[test]
fn without_the_broker_a_crashed_hub_is_replaced_over_data_channels() {
    let mut net = Net::channels_up(42);
    assert_eq!(net.agreed(&[0, 1, 2]).map(|t| t.hub), Some("kiosk-1".into()));
    net.broker_down();
    net.run_until(net.now + 1_000);
    let t0 = net.now;
    net.crash(0);
    let t = net.until(t0 + 10_000, |n| n.agreed(&[1, 2]).is_some());
    let term = net.agreed(&[1, 2]).unwrap_or_else(|| panic!("no new hub by {t:?}"));
    assert_eq!(term.hub, "pos-1", "the best survivor");
    // Commands still reach the quorum: the origin and the other survivor.
    net.commit(2, "ipad-1-after");
    net.run_until(net.now + 300);
    assert_eq!(net.acks(2, true), vec!["ipad-1-after".to_string()]);
    // The broker comes back: the new hub drains it, its claim is retained.
    net.broker_up();
    net.run_until(net.now + 2_000);
    assert!(net.ingest.as_ref().unwrap().contains_key("ipad-1-after"));
    let claim = Envelope::open(&net.retained[&topics::hub(VENUE)], &key()).unwrap();
    assert_eq!(claim.header.sender, "pos-1");
}

#[test]
fn a_will_for_a_peer_still_reachable_directly_does_not_remove_it() {
    let mut net = Net::channels_up(43);
    let t0 = net.now;
    // pos-1 lost the broker (its Will), but its data channels are fine.
    net.inject(0, &topics::presence(VENUE, "pos-1"), Vec::new(), true);
    net.run_until(t0 + 3_000);
    assert!(!net.events_since(0, t0).any(|e| matches!(e, MeshEvent::PeerLeft { .. })), "{:?}", net.devs[0].events);
    assert!(net.node(0).election().peer("pos-1").is_some());
    assert_accounted(&net.node(0).stats());
    // Without the channel, the same Will removes it.
    net.rtc_blocked = true;
    net.kill_rtc(0, 1);
    net.run_until(net.now + 10);
    net.inject(0, &topics::presence(VENUE, "pos-1"), Vec::new(), true);
    assert!(net.events(0).any(|e| matches!(e, MeshEvent::PeerLeft { device, .. } if device == "pos-1")));
}

#[test]
fn losing_the_broker_and_every_channel_takes_the_election_offline() {
    let mut net = Net::channels_up(44);
    net.rtc_blocked = true;
    net.broker_down();
    net.run_until(net.now + 500);
    assert!(net.node(0).is_reachable() && net.node(0).is_hub());
    net.kill_rtc(0, 1);
    net.kill_rtc(0, 2);
    net.run_until(net.now + 100);
    assert!(!net.node(0).is_reachable());
    assert!(!net.node(0).is_hub(), "a hub that reaches nobody steps down");
    // The other two still reach each other and elect one of them.
    net.until(net.now + 10_000, |n| n.agreed(&[1, 2]).is_some()).expect("pos-1 and ipad-1 agree");
}

/// 200 commands from random devices while the broker stops and returns,
/// channels die (and reopen on demand) and devices crash and restart from
/// their storage; after healing the ingest holds exactly the committed
/// commands and no device still holds one (all learnt the cloud ack).
/// `SIM_SEEDS=n` for more seeds (400 checked when this was written).
#[test]
fn seeded_broker_outages_hub_crashes_and_channel_failures_lose_no_command() {
    let seeds: u64 = std::env::var("SIM_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(40);
    for seed in 100..100 + seeds {
        let mut net = Net::channels_up(seed);
        let mut broker = true;
        let mut ids: Vec<(usize, String)> = Vec::new();
        for k in 0..200u64 {
            let i = net.rand(0, 2) as usize;
            if net.devs[i].node.is_some() {
                let id = format!("{}-{k}", net.devs[i].id);
                net.commit(i, &id);
                ids.push((i, id));
            }
            match net.rand(0, 199) {
                0..=2 if broker => {
                    net.broker_down();
                    broker = false;
                }
                3..=5 if !broker => {
                    net.broker_up();
                    broker = true;
                }
                6 => {
                    let (a, b) = (net.rand(0, 2) as usize, net.rand(0, 2) as usize);
                    if a != b {
                        net.kill_rtc(a, b);
                    }
                }
                7 => {
                    // A device crashes and restarts from its storage.
                    let c = net.rand(0, 2) as usize;
                    net.crash(c);
                    let back = net.now + net.rand(500, 3_000);
                    net.run_until(back);
                    net.start(c);
                }
                _ => {}
            }
            let step = net.rand(5, 60);
            net.run_until(net.now + step);
        }
        if !broker {
            net.broker_up();
        }
        net.run_until(net.now + 60_000);
        let stored = net.ingest.as_ref().unwrap();
        // Every command committed on a device (the origin survives: a crash
        // keeps completed writes, and `commit` is the completed write) ends
        // in the ingest; the ingest holds nothing else.
        let want: std::collections::BTreeSet<&str> = ids.iter().map(|(_, id)| id.as_str()).collect();
        let got: std::collections::BTreeSet<&str> = stored.keys().map(String::as_str).collect();
        let missing: Vec<_> = want.difference(&got).collect();
        let unknown: Vec<_> = got.difference(&want).collect();
        if !missing.is_empty() {
            for d in &net.devs {
                let n = d.node.as_ref().unwrap();
                let mine: Vec<_> = d.outbox.keys().filter(|k| missing.iter().any(|m| **m == k.as_str())).collect();
                let holders: Vec<_> = missing.iter().map(|m| n.replicator().holders(m)).collect();
                eprintln!("{}: hub {:?} reach {} outbox has {:?} holders {:?} rep {:?}", d.id, n.hub(), n.is_reachable(), mine, holders, n.replicator().stats());
            }
        }
        assert!(missing.is_empty() && unknown.is_empty(), "seed {seed}: missing {missing:?}, unknown {unknown:?}");
        // And every holder learnt it (the ack, its relay, or a re-offer).
        net.run_until(net.now + 200_000);
        for d in &net.devs {
            assert!(d.outbox.is_empty(), "seed {seed}: {} still holds {:?}", d.id, d.outbox.keys().collect::<Vec<_>>());
        }
    }
}
