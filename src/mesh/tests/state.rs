//! Shared state through the full node (`node/state_sync.rs`): STATE
//! envelopes on the broker and direct routes, write proofs with the device
//! keys, peers and reconnects into the store, storage through the harness's
//! crash-consistent disk. The seeded runs compare every device with the
//! last-writer-wins oracle of `sim/state_check.rs`.

use super::*;
use crate::state::{self, Event as StateEvent, Origin};
use std::rc::Rc;

const DOCS: &str = "products";
const STOCK: &str = "stock";

/// A state config with short timers (checksums 2 s after start, then every 10 s).
fn state_cfg() -> state::Config {
    let mut c = state::Config::new("set-by-the-node");
    c.first_check_after_ms = 2_000;
    c.check_every_ms = 10_000;
    c
}

/// Three devices with a store each, connected and elected.
fn state_net(seed: u64) -> Net {
    let mut net = Net::new(seed, trio());
    net.state = Some(state_cfg());
    net.start_all();
    net.run_until(3_000);
    net
}

fn store(net: &mut Net, i: usize) -> &mut state::Store {
    net.devs[i].node.as_mut().expect("running").state_mut().expect("state configured")
}

fn put(net: &mut Net, i: usize, key: &str, value: &str) {
    let wall = net.wall(i);
    store(net, i).put(DOCS, key, value, None, wall).unwrap();
    net.drain(i);
}

fn get(net: &Net, i: usize, c: &str, key: &str) -> Option<String> {
    net.node(i).state().unwrap().get(c, key)
}

/// The writes that became durable on their writers (from the upstream
/// commands of committed ops: each is the `0x30` body of one write).
fn committed(net: &Net) -> Vec<(String, Rc<str>, Rc<state::Write>)> {
    let mut v = Vec::new();
    for d in &net.devs {
        for u in &d.state_upstream {
            let Ok(state::StateMsg::Writes(b)) = state::wire::decode(&u.payload) else { panic!("an upstream payload is a 0x30 body") };
            for (k, ws) in b.keys {
                v.extend(ws.into_iter().map(|w| (b.collection.clone(), k.clone(), w)));
            }
        }
    }
    v
}

fn converged(net: &Net) -> Vec<String> {
    let stores: Vec<&state::Store> = (0..net.devs.len()).map(|i| net.node(i).state().unwrap()).collect();
    crate::sim::state_check::converged(&stores, &committed(net))
}

#[test]
fn a_write_reaches_every_device_named_after_its_writer() {
    let mut net = state_net(1);
    put(&mut net, 0, "sku-1", r#"{"name":"Tea","price":3}"#);
    net.run_until(net.now + 500);
    for i in 0..3 {
        assert_eq!(get(&net, i, DOCS, "sku-1").as_deref(), Some(r#"{"name":"Tea","price":3}"#), "device {i}");
    }
    for i in 1..3 {
        let origin = net.devs[i].state_events.iter().find_map(|(_, e)| match e {
            StateEvent::Changed { origin: Origin::Remote { writer, via }, .. } => Some((writer.to_string(), via.to_string())),
            _ => None,
        });
        assert_eq!(origin, Some(("kiosk-1".into(), "kiosk-1".into())));
    }
    let s = net.node(1).stats();
    assert!(s.traffic.state.msgs_in >= 1, "it came on the state topic: {:?}", s.traffic.state);
    assert_eq!(s.state.unwrap().remote_writes, 1);
    // The write's proof is the writer's Ed25519 signature over its canonical bytes.
    let st = net.node(2).state().unwrap().key_state(DOCS, "sku-1").unwrap();
    let w = &st.live()[0];
    let input = state::codec::signing_input(DOCS, "sku-1", w).unwrap();
    let sig: [u8; 64] = w.proof.as_slice().try_into().expect("a 64-byte proof");
    let key = store_of("kiosk-1").me().key;
    assert!(crate::trust::verify(&key, &[], &[&input], &sig));
}

/// Seed 001: two devices edit the same product while apart; on reconnect the
/// later edit wins on both, and both audit local, remote and final.
#[test]
fn edits_made_apart_converge_on_the_later_one_and_both_audit_it() {
    for seed in 2..=5 {
        let mut net = state_net(seed);
        put(&mut net, 0, "sku-1", r#"{"name":"Tea","price":3}"#);
        net.run_until(net.now + 500);
        net.broker_down();
        put(&mut net, 0, "sku-1", r#"{"name":"Tea","price":4}"#);
        net.run_until(net.now + 1_000);
        put(&mut net, 1, "sku-1", r#"{"name":"Tea","price":5}"#);
        net.run_until(net.now + 1_000);
        assert_eq!(get(&net, 0, DOCS, "sku-1").as_deref(), Some(r#"{"name":"Tea","price":4}"#), "apart, each keeps its own");
        net.broker_up();
        net.run_until(net.now + 30_000);
        for i in 0..3 {
            assert_eq!(get(&net, i, DOCS, "sku-1").as_deref(), Some(r#"{"name":"Tea","price":5}"#), "seed {seed} device {i}");
        }
        for i in 0..2 {
            let c = net.node(i).state().unwrap().conflicts(0, Some(DOCS));
            let e = c.first().unwrap_or_else(|| panic!("seed {seed}: device {i} audited the conflict"));
            assert_eq!(e.final_doc.as_deref(), Some(r#"{"name":"Tea","price":5}"#));
            let (local, remote) = if i == 0 { ("4", "5") } else { ("5", "4") };
            assert!(e.local.as_deref().is_some_and(|l| l.contains(&format!("\"price\":{local}"))), "seed {seed} device {i}: {e:?}");
            assert!(e.remote.contains(&format!("\"price\":{remote}")), "seed {seed} device {i}: {e:?}");
            assert_eq!(&*e.remote_write.writer, if i == 0 { "pos-1" } else { "kiosk-1" });
        }
        assert_eq!(converged(&net), Vec::<String>::new(), "seed {seed}");
    }
}

/// Two lanes each sell 5 of a stock of 100 while apart: 90 everywhere.
#[test]
fn two_lanes_selling_apart_end_at_the_sum() {
    let mut net = state_net(7);
    let wall = net.wall(0);
    store(&mut net, 0).increment(STOCK, "sku-1", "qty", 100, wall).unwrap();
    net.drain(0);
    net.run_until(net.now + 500);
    net.broker_down();
    for i in 0..2 {
        let wall = net.wall(i);
        store(&mut net, i).increment(STOCK, "sku-1", "qty", -5, wall).unwrap();
        net.drain(i);
    }
    net.run_until(net.now + 1_000);
    net.broker_up();
    net.run_until(net.now + 30_000);
    for i in 0..3 {
        assert_eq!(get(&net, i, STOCK, "sku-1").as_deref(), Some(r#"{"qty":90}"#), "device {i}");
    }
}

/// A write relayed by another device (as reconciliation does) is applied
/// only when its proof verifies with the writer's key: pos-1 cannot make
/// ipad-1 believe kiosk-1 wrote something.
#[test]
fn a_relayed_write_needs_the_writers_signature() {
    let mut net = state_net(9);
    let ctx = state::model::Context::default();
    let mut w = state::Write {
        id: state::WriteId { hlc: crate::hlc::Hlc::new(WALL0 + net.now, 0).unwrap(), writer: Rc::from("kiosk-1") },
        seq: 1,
        updated_at: None,
        ctx,
        op: state::model::Op::Put(vec![(Rc::from("price"), Rc::from("0"))]),
        proof: Vec::new(),
    };
    let input = state::codec::signing_input(DOCS, "sku-9", &w).unwrap();
    let mut counter = 1u64 << 60; // above pos-1's own counters (no replay)
    let mut relay = |net: &mut Net, w: &state::Write| {
        let body = state::StateMsg::Reconcile(state::wire::Reconcile {
            collection: DOCS.into(),
            keys: vec![(Rc::from("sku-9"), vec![Rc::new(w.clone())])],
            ..Default::default()
        })
        .encode()
        .unwrap();
        counter += 1;
        let header = Header { kind: Kind::State, sender: "pos-1".into(), counter, term: 0, hlc: crate::hlc::Hlc::new(WALL0 + net.now, 0).unwrap() };
        let env = Envelope::seal(&header, &body, &store_of("pos-1")).unwrap();
        net.inject(2, &crate::routing::wire::direct_topic(VENUE, "ipad-1"), env, false);
    };
    // Signed by the relay's own key: refused.
    w.proof = crate::trust::sign(store_of("pos-1").signing_key(), &[], &[&input]).to_vec();
    relay(&mut net, &w);
    assert_eq!(get(&net, 2, DOCS, "sku-9"), None);
    assert_eq!(net.node(2).state().unwrap().stats().refused, 1, "{:?} {:?}", net.node(2).stats().counters, net.node(2).stats().envelope);
    // No proof at all: refused.
    w.proof.clear();
    relay(&mut net, &w);
    assert_eq!(get(&net, 2, DOCS, "sku-9"), None);
    // Signed by the writer: applied, and named after it.
    w.proof = crate::trust::sign(store_of("kiosk-1").signing_key(), &[], &[&input]).to_vec();
    relay(&mut net, &w);
    assert_eq!(get(&net, 2, DOCS, "sku-9").as_deref(), Some(r#"{"price":0}"#));
}

/// Commands get real HLC stamps from the node's clock: increasing, near
/// the wall clock, and past every stamp the node has seen.
#[test]
fn command_stamps_come_from_the_clock() {
    let mut net = state_net(11);
    let wall = net.wall(0);
    let node = net.devs[0].node.as_mut().unwrap();
    let a = node.next_hlc(wall);
    let b = node.next_hlc(wall);
    assert!(a != 0 && b > a);
    assert!(crate::hlc::Hlc::from_packed(a).wall_ms() >= wall - 1);
    assert!(b > node.stats().hlc.to_packed() || b == node.stats().hlc.to_packed());
}

/// A device that joins late (a fresh store) gets the whole state by
/// reconciliation.
#[test]
fn a_late_device_catches_up() {
    let mut net = Net::new(13, trio());
    net.state = Some(state_cfg());
    net.start(0);
    net.start(1);
    net.run_until(3_000);
    for k in 0..40 {
        put(&mut net, k % 2, &format!("sku-{k}"), &format!(r#"{{"price":{k}}}"#));
    }
    net.run_until(net.now + 1_000);
    net.start(2);
    net.run_until(net.now + 20_000);
    for k in 0..40 {
        assert_eq!(get(&net, 2, DOCS, &format!("sku-{k}")), Some(format!(r#"{{"price":{k}}}"#)));
    }
    assert!(net.devs[2].state_events.iter().any(|(_, e)| matches!(e, StateEvent::ReconciliationCompleted { .. })));
    assert_eq!(converged(&net), Vec::<String>::new());
}

/// A device that held the state goes offline for an hour (virtual clock:
/// the harness's time, every timer of every node runs through it) while
/// the others edit, delete and sell, and edits offline itself; back
/// online it catches up, the others get its offline edits, and nothing
/// made on either side is lost. Default timers (comparisons every 10
/// minutes), not the test's short ones.
#[test]
fn a_device_offline_for_an_hour_catches_up() {
    let mut net = Net::new(17, trio());
    net.state = Some(state::Config::new("set-by-the-node"));
    net.start_all();
    net.run_until(3_000);
    for k in 0..30 {
        put(&mut net, 0, &format!("sku-{k}"), &format!(r#"{{"price":{k}}}"#));
    }
    net.run_until(net.now + 2_000);
    assert_eq!(get(&net, 2, DOCS, "sku-29"), Some(r#"{"price":29}"#.into()), "device 2 had the state");
    // Device 2 drops off the network (its Will follows) for an hour.
    net.devs[2].connected = false;
    let now = net.now;
    net.devs[2].node.as_mut().unwrap().handle_transport(false, now);
    net.drain(2);
    net.push(now + WILL_DELAY, Ev::Will { of: 2 });
    let back_at = now + 3_600_000;
    for minute in 0..60u64 {
        let t = now + minute * 60_000 + 1_000;
        net.run_until(t);
        let k = minute % 30;
        match minute % 4 {
            0 => put(&mut net, 0, &format!("sku-{k}"), &format!(r#"{{"price":{}}}"#, 100 + minute)),
            1 => {
                let wall = net.wall(1);
                store(&mut net, 1).delete(DOCS, &format!("sku-{k}"), wall).unwrap();
                net.drain(1);
            }
            2 => {
                let wall = net.wall(1);
                store(&mut net, 1).increment(STOCK, "sku-0", "qty", -1, wall).unwrap();
                net.drain(1);
            }
            _ => put(&mut net, 2, &format!("offline-{minute}"), r#"{"by":"device 2"}"#),
        }
    }
    net.run_until(back_at);
    assert_eq!(get(&net, 2, DOCS, "sku-0"), Some(r#"{"price":0}"#.into()), "apart, device 2 missed the edits");
    let (inc, at) = (net.devs[2].inc, net.now + 50);
    net.push(at, Ev::Connect { to: 2, inc });
    let same = |n: &Net| [DOCS, STOCK].iter().all(|c| (1..3).all(|i| n.node(i).state().unwrap().checksum(c) == n.node(0).state().unwrap().checksum(c)));
    let t = net.until(net.now + 60_000, same);
    assert!(t.is_some(), "not caught up a minute after coming back: {:#?}", converged(&net));
    assert_eq!(converged(&net), Vec::<String>::new());
    println!("# offline an hour: caught up {} ms after coming back", t.unwrap() - back_at);
    assert_eq!(get(&net, 0, DOCS, "offline-59"), Some(r#"{"by":"device 2"}"#.into()), "its offline edits reached the others");
    assert_eq!(get(&net, 2, STOCK, "sku-0"), Some(r#"{"qty":-15}"#.into()), "every sale counted");
}

/// One seeded run: writes on every device while the world disconnects
/// devices (their Will, messages lost), stops the broker, crashes devices
/// (unfinished writes lost, restart from their disk), with skewed clocks;
/// then it heals and every device must hold the oracle's state.
fn seeded_run(seed: u64) -> (Vec<String>, usize) {
    let mut net = Net::new(seed, trio());
    net.state = Some(state_cfg());
    net.state_truth = Some(Default::default());
    let mut r = Rng::new(seed ^ 0x5eed);
    for d in 0..3 {
        net.devs[d].skew = r.below(4_001) as i64 - 2_000;
    }
    net.start_all();
    net.run_until(2_000);
    for step in 0..60 {
        let i = r.below(3) as usize;
        let running = net.devs[i].node.is_some();
        match r.below(20) {
            0 if running => net.crash(i),
            1 if !running => net.start(i),
            2 if net.devs[i].connected => {
                net.devs[i].connected = false;
                let now = net.now;
                net.devs[i].node.as_mut().unwrap().handle_transport(false, now);
                net.drain(i);
                net.push(now + WILL_DELAY, Ev::Will { of: i });
            }
            3 if running && !net.devs[i].connected => {
                let (inc, at) = (net.devs[i].inc, net.now + 50);
                net.push(at, Ev::Connect { to: i, inc });
            }
            4 if !net.broker_off => net.broker_down(),
            5 if net.broker_off => net.broker_up(),
            _ if running => {
                let key = format!("k{}", r.below(4));
                let wall = net.wall(i);
                let s = store(&mut net, i);
                let (collection, done) = match r.below(5) {
                    0 => (DOCS, s.put(DOCS, &key, &format!(r#"{{"a":{step},"b":{i}}}"#), None, wall)),
                    1 => (DOCS, s.patch(DOCS, &key, &format!(r#"{{"b":{step}}}"#), None, wall)),
                    2 => (DOCS, s.delete(DOCS, &key, wall)),
                    _ => (STOCK, s.increment(STOCK, &key, "qty", r.below(11) as i64 - 5, wall)),
                };
                // Ground truth: the write's history is what its device had received.
                if let Some(w) = done.ok().and_then(|t| s.unsaved_write(t)) {
                    let id = (collection.to_string(), Rc::from(key.as_str()));
                    let known = net.devs[i].state_known.entry(id.clone()).or_default();
                    let seen = Rc::new(known.clone());
                    known.insert(w.id.clone());
                    net.state_truth.as_mut().unwrap().history.insert((id.0, id.1, w.id.clone()), seen);
                }
                net.drain(i);
            }
            _ => {}
        }
        let t = net.now + 50 + r.below(400);
        net.run_until(t);
    }
    // Heal: the broker up, everyone running and connected.
    if net.broker_off {
        net.broker_up();
    }
    for i in 0..3 {
        if net.devs[i].node.is_none() {
            net.start(i);
        } else if !net.devs[i].connected {
            let (inc, at) = (net.devs[i].inc, net.now + 50);
            net.push(at, Ev::Connect { to: i, inc });
        }
    }
    net.run_until(net.now + 45_000);
    let mut v = converged(&net);
    // The audit through the full node: an entry for every concurrent pair
    // that met (or a later write of the loser's line), none for a
    // sequential pair, against the harness's ground truth of causality.
    let mut truth = net.state_truth.take().expect("kept");
    truth.committed = committed(&net);
    let entries: Vec<_> = net
        .devs
        .iter()
        .flat_map(|d| d.state_events.iter())
        .filter_map(|(_, e)| match e {
            StateEvent::Conflict(c) => Some(c.clone()),
            _ => None,
        })
        .collect();
    v.extend(crate::sim::state_check::audit(&truth, &entries));
    (v, entries.len())
}

#[test]
fn seeded_full_node_runs_converge_to_the_lww_oracle_and_audit_every_concurrent_pair() {
    // STATE_NODE_SEEDS=1000 for the long run (docs/state.md); the seeds are
    // shared out over STATE_NODE_THREADS threads (default: the cores), each
    // run single-threaded and deterministic as before.
    let n: u64 = std::env::var("STATE_NODE_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(40);
    let threads: u64 = std::env::var("STATE_NODE_THREADS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |p| p.get() as u64))
        .clamp(1, n.max(1));
    let started = std::time::Instant::now();
    let results: Vec<Result<usize, String>> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                scope.spawn(move || {
                    let mut entries = 0;
                    for k in (t..n).step_by(threads as usize) {
                        let seed = 0x5747_0000 + k;
                        let (v, e) = seeded_run(seed);
                        if !v.is_empty() {
                            return Err(format!("SEED={seed:#x}: {v:#?}"));
                        }
                        entries += e;
                    }
                    Ok(entries)
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap_or_else(|_| Err("a run panicked".into()))).collect()
    });
    let mut entries = 0;
    for r in results {
        entries += r.unwrap_or_else(|e| panic!("{e}"));
    }
    println!("# {n} full-node runs on {threads} threads in {:?}: {entries} conflict entries, each naming a concurrent pair", started.elapsed());
    assert!(entries > 0, "the runs made concurrent writes that met");
}

/// The audit check through the full node can fail: a store that audits
/// sequential pairs, or nothing, is caught within a few seeds.
#[test]
fn the_full_node_audit_check_catches_broken_rules() {
    use crate::state::mutation::{set, Mutation};
    for m in [Mutation::AuditWithoutContext, Mutation::AuditNothing] {
        set(m);
        let caught = (0..30).find_map(|k| {
            let (v, _) = seeded_run(0x5747_8000 + k);
            (!v.is_empty()).then(|| (k + 1, v[0].clone()))
        });
        set(Mutation::None);
        let (runs, why) = caught.unwrap_or_else(|| panic!("{m:?} was never caught through the full node"));
        println!("{m:?} caught after {runs} full-node runs: {why}");
    }
}

/// A broadcast lost while every device stays up (no peer event, no timer
/// due): the heartbeats' venue digests differ, and the store asks for a
/// comparison that repairs it within seconds.
#[test]
fn a_lost_broadcast_is_repaired_through_the_heartbeat_digest() {
    let mut net = Net::new(15, trio());
    let mut cfg = state_cfg();
    (cfg.first_check_after_ms, cfg.check_every_ms) = (3_600_000, 3_600_000);
    net.state = Some(cfg);
    net.start_all();
    net.run_until(3_000);
    // Device 0's publishes go nowhere for a moment; its node does not know.
    net.devs[0].connected = false;
    put(&mut net, 0, "sku-1", r#"{"price":7}"#);
    let (inc, at) = (net.devs[0].inc, net.now + 20);
    net.push(at, Ev::Connect { to: 0, inc });
    net.run_until(net.now + 100);
    assert_eq!(get(&net, 1, DOCS, "sku-1"), None, "the broadcast was lost");
    let t = net.until(net.now + 15_000, |n| (1..3).all(|i| get(n, i, DOCS, "sku-1").is_some()));
    assert!(t.is_some(), "the digest mismatch led to a reconciliation");
    assert_eq!(converged(&net), Vec::<String>::new());
}
