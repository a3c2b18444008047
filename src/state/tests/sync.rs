//! Writes reaching peers: ordering rules, conflicts and their audit,
//! counters, refusals.

use super::*;
use crate::hlc::Hlc;

const P: &str = "products";

#[test]
fn a_write_reaches_every_peer_and_reports_where_it_came_from() {
    let mut net = Net::new(3);
    net.put(0, P, "sku-1", r#"{"name":"Tea","price":3}"#);
    net.settle();
    for i in 0..3 {
        assert_eq!(net.get(i, P, "sku-1").as_deref(), Some(r#"{"name":"Tea","price":3}"#));
    }
    let remote = net.devs[2].events.iter().find_map(|e| match e {
        Event::Changed { origin: Origin::Remote { writer, via }, value, .. } => Some((writer.clone(), via.clone(), value.clone())),
        _ => None,
    });
    assert_eq!(remote, Some((Rc::from("dev-0"), Rc::from("dev-0"), Some(r#"{"name":"Tea","price":3}"#.into()))));
    assert!(net.devs[0].events.iter().any(|e| matches!(e, Event::Changed { origin: Origin::Local, .. })));
    assert_eq!(net.devs[1].store.checksum(P), net.devs[0].store.checksum(P));
    assert_eq!(net.devs[1].store.venue_digest(), net.devs[0].store.venue_digest());
    // Its own broadcast looped back (another tab, a relay) changes nothing.
    let body = StateMsg::Checksums(wire::Checksums { reply: true, collections: vec![] }).encode().unwrap();
    let now = net.now;
    net.devs[0].store.handle_body("dev-0", &body, now).unwrap();
    assert!(net.devs[0].store.poll_output().is_none());
}

/// Seed 001's scenario: two devices edit the same product while apart; on
/// reconnect the later edit wins on both and the audit shows local, remote
/// and final on both.
#[test]
fn concurrent_edits_while_apart_are_resolved_the_same_everywhere_and_audited() {
    let mut net = Net::new(3);
    net.put(0, P, "sku-1", r#"{"name":"Tea","price":3}"#);
    net.settle();
    net.devs[0].online = false;
    net.devs[1].online = false;
    net.now += 1_000;
    net.patch(0, P, "sku-1", r#"{"price":4}"#);
    net.now += 60_000; // 10:00 then 10:01: device 1's edit is the later one
    net.patch(1, P, "sku-1", r#"{"price":5,"size":"L"}"#);
    net.devs[0].online = true;
    net.devs[1].online = true;
    // Reconnect: each tells the other its checksums, reconciliation runs.
    net.reconnect(0, 1);
    net.advance(10_000);
    for i in 0..3 {
        assert_eq!(net.get(i, P, "sku-1").as_deref(), Some(r#"{"name":"Tea","price":5,"size":"L"}"#), "device {i}");
    }
    let a = net.conflicts(0);
    let b = net.conflicts(1);
    assert_eq!(a.len(), 1, "{a:#?}");
    assert_eq!(b.len(), 1, "{b:#?}");
    assert_eq!(a[0].local.as_deref(), Some(r#"{"name":"Tea","price":4}"#));
    assert_eq!(a[0].remote, r#"{"price":5,"size":"L"}"#);
    assert_eq!(a[0].final_doc.as_deref(), Some(r#"{"name":"Tea","price":5,"size":"L"}"#));
    assert_eq!(a[0].winner, Winner::Remote);
    assert_eq!((a[0].remote_write.writer.as_str(), a[0].local_writes[0].writer.as_str()), ("dev-1", "dev-0"));
    assert_eq!(b[0].winner, Winner::Local);
    assert_eq!(b[0].local.as_deref(), Some(r#"{"name":"Tea","price":5,"size":"L"}"#));
    assert_eq!(b[0].remote, r#"{"price":4}"#);
    assert!(a[0].to_json().contains("\"resolvedBy\":\"system\""));
    assert_eq!(net.devs[0].store.checksum(P), net.devs[1].store.checksum(P));
    // The third device received both writes as they came: whichever came
    // second met the first without having seen it.
    assert!(net.conflicts(2).len() <= 1);
    let log = net.devs[0].store.sync_log(0);
    assert!(log.iter().any(|l| l.status == SyncStatus::Conflict), "{log:#?}");
    assert!(log.iter().any(|l| l.reason == "reconciliation" && l.status == SyncStatus::Success));
}

#[test]
fn sequential_edits_are_never_audited_as_conflicts() {
    let mut net = Net::new(3);
    for round in 0..6 {
        let who = round % 3;
        net.now += 10;
        net.patch(who, P, "sku-1", &format!(r#"{{"price":{round}}}"#));
        net.settle();
    }
    // Even with a device's clock far behind, a write it makes after seeing
    // another wins over it.
    net.now -= 50_000;
    net.patch(1, P, "sku-1", r#"{"price":99}"#);
    net.settle();
    for i in 0..3 {
        assert!(net.conflicts(i).is_empty(), "device {i}: {:#?}", net.conflicts(i));
        assert_eq!(net.get(i, P, "sku-1").as_deref(), Some(r#"{"price":99}"#));
    }
}

/// The four cases of seed 001's `updatedAt` rules, through the store API.
#[test]
fn updated_at_rules_decide_between_imports() {
    let mut net = Net::new(2);
    let import = |net: &mut Net, i: usize, key: &str, v: &str, ua: Option<u64>| {
        let now = net.now;
        net.devs[i].store.put(P, key, v, ua, now).unwrap();
        net.drain(i);
    };
    net.devs[1].online = false;
    // no local timestamp → remote wins (even though the local one is newer by HLC)
    import(&mut net, 0, "a", r#"{"v":"remote"}"#, Some(1_000));
    net.now += 5;
    import(&mut net, 1, "a", r#"{"v":"local"}"#, None);
    // no remote timestamp → local wins
    import(&mut net, 0, "b", r#"{"v":"remote"}"#, None);
    import(&mut net, 1, "b", r#"{"v":"local"}"#, Some(1_000));
    // both → the newer app timestamp wins, whatever the HLC says
    import(&mut net, 1, "c", r#"{"v":"local"}"#, Some(2_000));
    net.now += 5;
    import(&mut net, 0, "c", r#"{"v":"remote"}"#, Some(1_500));
    // neither → the later write (by HLC), so both devices agree
    import(&mut net, 1, "d", r#"{"v":"local"}"#, None);
    net.now += 5;
    import(&mut net, 0, "d", r#"{"v":"remote"}"#, None);
    net.reconnect(1, 0);
    net.advance(10_000);
    for i in 0..2 {
        let v = |k| net.get(i, P, k).unwrap();
        assert_eq!(v("a"), r#"{"v":"remote"}"#);
        assert_eq!(v("b"), r#"{"v":"local"}"#);
        assert_eq!(v("c"), r#"{"v":"local"}"#);
        assert_eq!(v("d"), r#"{"v":"remote"}"#);
    }
    // An edit without a timestamp on an imported record gets one above it,
    // so it wins everywhere.
    net.patch(0, P, "b", r#"{"v":"edited"}"#);
    net.settle();
    assert_eq!(net.get(1, P, "b").as_deref(), Some(r#"{"v":"edited"}"#));
}

#[test]
fn two_lanes_selling_apart_converge_to_the_sum() {
    let mut net = Net::new(3);
    let t = net.devs[0].store.increment("stock", "sku-1", "qty", 100, net.now).unwrap();
    net.drain(0);
    net.settle();
    assert_eq!(net.written(0), vec![t]);
    net.devs[0].online = false;
    net.devs[1].online = false;
    for _ in 0..5 {
        net.now += 1;
        for i in [0, 1] {
            let now = net.now;
            net.devs[i].store.increment("stock", "sku-1", "qty", -1, now).unwrap();
            net.drain(i);
        }
    }
    assert_eq!(net.get(0, "stock", "sku-1").as_deref(), Some(r#"{"qty":95}"#));
    net.reconnect(2, 0);
    net.reconnect(2, 1);
    net.advance(10_000);
    for i in 0..3 {
        assert_eq!(net.get(i, "stock", "sku-1").as_deref(), Some(r#"{"qty":90}"#), "device {i}");
        assert!(net.conflicts(i).is_empty(), "increments never conflict with each other");
    }
}

#[test]
fn a_delete_is_not_undone_by_an_older_write_arriving_later() {
    let mut net = Net::new(2);
    net.put(0, P, "k", r#"{"a":1}"#);
    net.settle();
    net.devs[1].online = false;
    net.now += 10;
    net.patch(1, P, "k", r#"{"a":2}"#); // made first, delivered last
    net.now += 10;
    let t = net.devs[0].store.delete(P, "k", net.now).unwrap();
    net.drain(0);
    assert!(net.written(0).contains(&t));
    net.reconnect(1, 0);
    net.advance(10_000);
    assert_eq!(net.get(0, P, "k"), None);
    assert_eq!(net.get(1, P, "k"), None);
    assert_eq!(net.devs[0].store.checksum(P), net.devs[1].store.checksum(P));
    assert_eq!(net.conflicts(0).len() + net.conflicts(1).len(), 2, "the patch and the delete had not seen each other");
    assert!(net.devs[1].events.iter().any(|e| matches!(e, Event::Changed { value: None, .. })));
}

#[test]
fn a_batch_with_another_devices_write_is_refused_whole() {
    let mut net = Net::new(3);
    net.devs[1].online = false;
    net.put(0, P, "k", r#"{"a":1}"#);
    // Device 2 tries to pass device 0's write off as part of its own batch.
    let forged = {
        let w = net.devs[0].store.key_state(P, "k").unwrap().live()[0].clone();
        StateMsg::Writes(wire::WriteBatch { collection: P.into(), keys: vec![(Rc::from("k"), vec![w])] }).encode().unwrap()
    };
    let before = net.devs[1].store.checksum(P);
    let err = net.devs[1].store.handle_body("dev-2", &forged, net.now).unwrap_err();
    assert_eq!(err, StateError::WriterMismatch { sender: "dev-2".into(), writer: "dev-0".into() });
    assert_eq!(net.devs[1].store.checksum(P), before);
    assert_eq!(net.devs[1].store.stats().refused, 1);
    assert!(net.devs[1].store.sync_log(0).iter().any(|l| l.status == SyncStatus::Error && l.reason == "writer mismatch"));
    // Garbage is a typed error too, and changes nothing.
    for junk in [&[][..], &[0x30][..], &[0x99, 1, 2][..], &forged[..forged.len() - 1]] {
        assert!(matches!(net.devs[1].store.handle_body("dev-2", junk, net.now), Err(StateError::Wire(_))));
    }
    assert_eq!(net.devs[1].store.checksum(P), before);
}

/// A toy signature: the writer's name and the input's digest, so a relay
/// cannot produce one for another writer without knowing the "key".
struct NameSig(String);

fn toy_sig(writer: &str, input: &[u8]) -> Vec<u8> {
    use sha2::{Digest, Sha256};
    Sha256::new().chain_update(writer.as_bytes()).chain_update(b"secret").chain_update(input).finalize().to_vec()
}

impl WriteAuth for NameSig {
    fn sign(&mut self, input: &[u8]) -> Vec<u8> {
        toy_sig(&self.0, input)
    }
    fn verify(&self, writer: &str, input: &[u8], proof: &[u8]) -> bool {
        toy_sig(writer, input) == proof
    }
}

#[test]
fn relayed_writes_must_carry_their_writers_proof() {
    let mut net = Net::with(3, config, |i| Box::new(NameSig(format!("dev-{i}"))));
    net.devs[2].online = false;
    net.put(0, P, "k", r#"{"a":1}"#);
    net.settle();
    // Device 1 relays it to device 2 during a reconciliation: accepted.
    net.reconnect(2, 1);
    net.advance(5_000);
    assert_eq!(net.get(2, P, "k").as_deref(), Some(r#"{"a":1}"#));
    // A write whose proof was tampered with is refused, and the session
    // does not claim the relay's frontier.
    let mut w = (*net.devs[0].store.key_state(P, "k").unwrap().live()[0]).clone();
    w.id.hlc = Hlc::new(w.id.hlc.wall_ms() + 1, 0).unwrap();
    w.seq += 1;
    w.op = model::Op::Patch(vec![(Rc::from("a"), Rc::from("666"))]);
    let m = StateMsg::Reconcile(wire::Reconcile {
        session: 7,
        open: true,
        from_initiator: true,
        collection: P.into(),
        keys: vec![(Rc::from("k"), vec![Rc::new(w)])],
        ..Default::default()
    });
    let refused = net.devs[2].store.stats().refused;
    net.devs[2].store.handle_body("dev-1", &m.encode().unwrap(), net.now).unwrap();
    assert_eq!(net.get(2, P, "k").as_deref(), Some(r#"{"a":1}"#));
    assert_eq!(net.devs[2].store.stats().refused, refused + 1);
    assert!(net.devs[2].store.sync_log(0).iter().any(|l| l.reason == "bad write proof"));
}

#[test]
fn bad_arguments_are_typed_errors() {
    let mut net = Net::new(1);
    let s = &mut net.devs[0].store;
    let now = T0;
    assert!(matches!(s.put("bad name", "k", "{}", None, now), Err(StateError::InvalidArgument(_))));
    assert!(matches!(s.put(P, "", "{}", None, now), Err(StateError::InvalidArgument(_))));
    assert!(matches!(s.put(P, "k", "[1]", None, now), Err(StateError::InvalidArgument(_))));
    assert!(matches!(s.put(P, "k", "{\"a\":", None, now), Err(StateError::InvalidArgument(_))));
    assert!(matches!(s.put(P, "k", "{\"\":1}", None, now), Err(StateError::InvalidArgument(_))));
    assert!(matches!(s.patch(P, "k", "{}", None, now), Err(StateError::InvalidArgument(_))));
    assert!(matches!(s.increment(P, "k", "", 1, now), Err(StateError::InvalidArgument(_))));
    let big = format!("{{\"a\":\"{}\"}}", "x".repeat(40_000));
    assert!(matches!(s.put(P, "k", &big, None, now), Err(StateError::TooLarge { .. })));
    let mut fresh = Store::new(config("z"), 1, Box::new(Unsigned)).unwrap();
    assert_eq!(fresh.put(P, "k", "{}", None, now), Err(StateError::NotLoaded));
    assert!(Store::new(config("no spaces"), 1, Box::new(Unsigned)).is_err());
    assert_eq!(s.unsaved_writes(), 0);
}

#[test]
fn entries_lists_by_prefix_with_unsaved_writes() {
    let mut net = Net::new(1);
    for k in ["a1", "a2", "b1", "a3"] {
        net.put(0, P, k, &format!(r#"{{"k":"{k}"}}"#));
    }
    net.devs[0].disk_ok = false; // the next write stays unsaved
    let now = net.now;
    net.devs[0].store.put(P, "a0", r#"{"k":"a0"}"#, None, now).unwrap();
    net.devs[0].store.delete(P, "a2", now).unwrap();
    net.drain(0);
    let keys: Vec<String> = net.devs[0].store.entries(P, "a", 10).into_iter().map(|(k, _)| k.to_string()).collect();
    assert_eq!(keys, ["a0", "a1", "a3"]);
    assert_eq!(net.devs[0].store.entries(P, "a", 2).len(), 2);
    assert_eq!(net.devs[0].store.entries(P, "", 10).len(), 4);
    assert_eq!(net.get(0, P, "a0").as_deref(), Some(r#"{"k":"a0"}"#), "read your own writes");
}
