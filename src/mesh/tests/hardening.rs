//! Issue #16 through whole `MeshNode`s: a certified rogue's unbounded term,
//! and empty retained presences that anyone on the broker can publish.
//! Each test failed before its fix.

use super::*;

/// A rogue with a valid certificate and the greatest possible id.
fn zid() -> String {
    "z".repeat(64)
}

impl Net {
    /// `payload` published on `topic` by somebody outside the venue's
    /// devices: retained (or cleared when empty) and delivered to all.
    fn rogue_publish(&mut self, topic: &str, payload: Vec<u8>, retain: bool) {
        if retain && payload.is_empty() {
            self.retained.remove(topic);
        } else if retain {
            self.retained.insert(topic.to_string(), payload.clone());
        }
        for i in 0..self.devs.len() {
            if self.devs[i].connected {
                self.inject(i, topic, payload.clone(), false);
            }
        }
    }

    fn hub_changes(&self, i: usize, since: u64) -> usize {
        self.devs[i].events.iter().filter(|(t, e)| *t >= since && matches!(e, MeshEvent::HubChanged { .. })).count()
    }
}

/// The attack: a claim of term 2^64−1, the top score, a `z`×64 id,
/// retained on `hub`. Before the bound every device took it as its fencing
/// level and wrote it to storage: no device could ever claim higher, so
/// after the hub died (or everybody reloaded) there was no hub for good.
#[test]
fn a_rogue_claim_of_term_2_pow_64_does_not_end_the_elections() {
    let mut net = elected(3);
    let z = zid();
    let claim = craft(Kind::HubClaim, &z, 1, WALL0 + net.now, &Body::HubClaim { term: u64::MAX, score: u64::MAX });
    net.rogue_publish(&topics::hub(VENUE), claim, true);
    net.run_until(net.now + 500);
    for i in 0..3 {
        let s = net.node(i).stats();
        assert!(s.term.as_ref().is_some_and(|t| t.number < 10), "{:?}", s.term);
        assert!(s.security.election.term_jump >= 1, "{:?}", s.security);
    }
    // The hub dies: the others elect again.
    net.crash(0);
    let t0 = net.now;
    net.until(t0 + 3_000, |n| n.agreed(&[1, 2]).is_some_and(|t| t.hub == "pos-1")).expect("a new hub");
    // Every device restarts from its storage; the forged claim is still retained.
    for i in 1..3 {
        net.crash(i);
    }
    net.run_until(net.now + 500);
    let claim = craft(Kind::HubClaim, &z, 2, WALL0 + net.now, &Body::HubClaim { term: u64::MAX, score: u64::MAX });
    net.retained.insert(topics::hub(VENUE), claim);
    (0..3).for_each(|i| net.start_with(i, true));
    net.until(net.now + 5_000, |n| n.agreed(&[0, 1, 2]).is_some()).expect("a hub after every device restarted");
    for i in 0..3 {
        let t = net.devs[i].durable.persisted_term.highest_seen.clone();
        assert!(t.is_some_and(|t| t.number < 10), "device {i} persisted a far term");
    }
}

/// Forged empty retained presence for the hub, 8 times (no key needed):
/// before, every one made the followers drop the hub and elect (90 hub
/// changes in the issue); now the hub answers the probe and nothing moves.
#[test]
fn forged_empty_presence_of_the_hub_changes_nothing() {
    for seed in 1..=4 {
        let mut net = elected(seed);
        let t0 = net.now;
        let p = topics::presence(VENUE, "kiosk-1");
        for _ in 0..8 {
            net.rogue_publish(&p, Vec::new(), true);
            net.run_until(net.now + 250);
        }
        net.run_until(net.now + 2_000);
        for i in 0..3 {
            assert_eq!(net.hub_changes(i, t0), 0, "seed {seed}: device {i} changed hub");
        }
        assert_eq!(net.agreed(&[0, 1, 2]).map(|t| t.hub), Some("kiosk-1".into()));
        for i in [1, 2] {
            let s = net.node(i).stats();
            assert!(s.security.forged_presence >= 1, "seed {seed}: {:?}", s.security);
            assert!(!net.events(i).any(|e| matches!(e, MeshEvent::PeerLeft { .. })), "seed {seed}");
            assert_accounted(&s);
        }
        // The hub re-announced its presence (its own "Will"): retained again.
        assert!(net.retained.contains_key(&p), "seed {seed}");
    }
}

/// A forged clear for a follower: it stays in every table (it heartbeats
/// within `I` + the probe time).
#[test]
fn forged_empty_presence_of_a_follower_removes_nobody() {
    let mut net = elected(2);
    let p = topics::presence(VENUE, "pos-1");
    net.rogue_publish(&p, Vec::new(), true);
    net.run_until(net.now + 2_000);
    for i in [0, 2] {
        assert!(!net.events(i).any(|e| matches!(e, MeshEvent::PeerLeft { .. })));
        assert_eq!(net.node(i).stats().security.forged_presence, 1);
    }
}

/// The node times its own heartbeat through the broker (`node/lag.rs`):
/// the echo handled 700 ms after it was sent says the page's input is
/// 700 ms behind, reported in the stats and handed to the election.
#[test]
fn the_echo_of_an_own_heartbeat_measures_the_receive_lag() {
    let mut n = lone(info(DeviceKind::Pos, None), &MeshState::default());
    n.handle_transport(true, 0);
    settle(&mut n, 0);
    let h = topics::heartbeat(VENUE, "pos-1");
    let mut at = 0;
    let mut beat = None;
    while beat.is_none() && at < 2_000 {
        at += 10;
        for o in drain_all(&mut n, at) {
            if let Output::Publish { topic, payload, .. } = o {
                if topic == h {
                    beat = Some(payload);
                }
            }
        }
    }
    let beat = beat.expect("a heartbeat");
    n.handle_message(&h, &beat, false, at + 700, WALL0 + at + 700);
    assert_eq!(n.stats().receive_lag_ms, (700, 700));
    assert_eq!(n.stats().counters.own_echo, 1);
    // A second copy (or a forgery of our topic) measures nothing more.
    n.handle_message(&h, &beat, false, at + 900, WALL0 + at + 900);
    assert_eq!(n.stats().receive_lag_ms, (700, 700));
}
