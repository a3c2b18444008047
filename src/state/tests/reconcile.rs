//! Reconciliation: what triggers it, what it moves, what it costs, and the
//! tombstone rules that keep deleted data deleted.

use super::*;

const P: &str = "products";

/// A realistic catalogue record (about 150 bytes of JSON).
pub(crate) fn product(i: usize, price_cents: usize) -> String {
    format!(
        r#"{{"active":true,"barcode":"40063813{i:05}","category":"tea","name":"Product {i} - organic green tea 250 g","price":{}.{:02},"sku":"SKU-{i:06}","vat":0.2}}"#,
        price_cents / 100,
        price_cents % 100
    )
}

/// Bytes of one message carrying every record of `dev`'s collection: what
/// a full snapshot transfer would cost.
pub(crate) fn snapshot_bytes(store: &Store, collection: &str) -> usize {
    let keys: Vec<_> = store.key_states(collection).map(|(k, s)| (k.clone(), s.live().to_vec())).collect();
    StateMsg::Reconcile(wire::Reconcile { collection: collection.into(), keys, ..Default::default() }).encode().unwrap().len()
}

/// The figure the issue asks for: 10,000 records differing in 1 % cost at
/// most 5 % of a full snapshot on the wire (the time is printed by
/// `examples/state_reconcile.rs`, next to a snapshot transfer).
#[test]
fn ten_thousand_records_one_percent_apart_cost_under_five_percent_of_a_snapshot() {
    let mut net = Net::new(2);
    for i in 0..10_000 {
        net.put(0, P, &format!("sku-{i:06}"), &product(i, 100 + i));
    }
    net.settle();
    assert_eq!(net.devs[1].store.checksum(P), net.devs[0].store.checksum(P));
    net.devs[0].online = false;
    net.devs[1].online = false;
    for i in 0..50 {
        net.put(0, P, &format!("sku-{:06}", i * 197), &product(i * 197, 999));
        net.patch(1, P, &format!("sku-{:06}", i * 193 + 7), r#"{"price":1.5}"#);
    }
    assert_ne!(net.devs[1].store.checksum(P), net.devs[0].store.checksum(P));
    net.delivered = [0; 3];
    net.reconnect(0, 1);
    net.advance(5_000);
    assert_eq!(net.devs[1].store.checksum(P), net.devs[0].store.checksum(P));
    assert_eq!(net.get(1, P, "sku-000197"), Some(product(197, 999)));
    let snapshot = snapshot_bytes(&net.devs[0].store, P);
    let wire: u64 = net.delivered.iter().sum();
    let share = wire as f64 / snapshot as f64;
    println!("10,000 records, 100 differing: {wire} bytes on the wire, full snapshot {snapshot} bytes ({:.2} %)", share * 100.0);
    assert!(share <= 0.05, "{wire} of {snapshot} bytes");
    let done: Vec<_> = net.devs[0].events.iter().filter(|e| matches!(e, Event::ReconciliationCompleted { .. })).collect();
    assert_eq!(done.len(), 1, "{done:?}");
}

#[test]
fn a_new_device_gets_the_whole_state_and_little_more() {
    let mut net = Net::new(3);
    net.devs[2].online = false;
    for i in 0..1_000 {
        net.put(0, P, &format!("sku-{i:04}"), &product(i, 250));
        if i % 10 == 0 {
            let now = net.now;
            net.devs[1].store.increment("stock", &format!("sku-{i:04}"), "qty", 12, now).unwrap();
            net.drain(1);
        }
    }
    net.settle();
    net.delivered = [0; 3];
    net.reconnect(2, 0);
    net.advance(5_000);
    for c in [P, "stock"] {
        assert_eq!(net.devs[2].store.checksum(c), net.devs[0].store.checksum(c), "{c}");
    }
    let snapshot = snapshot_bytes(&net.devs[0].store, P) + snapshot_bytes(&net.devs[0].store, "stock");
    let wire: u64 = net.delivered.iter().sum();
    println!("a new device: {wire} bytes for a {snapshot}-byte snapshot");
    assert!(wire as f64 <= snapshot as f64 * 1.05, "{wire} vs {snapshot}");
}

#[test]
fn a_device_offline_for_an_hour_catches_up_both_ways() {
    let mut net = Net::new(3);
    for i in 0..200 {
        net.put(i % 3, P, &format!("k{i}"), &format!(r#"{{"v":{i}}}"#));
    }
    net.settle();
    net.devs[2].online = false;
    for i in 0..600 {
        net.now += 6_000;
        net.patch(i % 2, P, &format!("k{}", i % 200), &format!(r#"{{"v":{},"t":{i}}}"#, i + 1000));
        if i % 100 == 0 {
            net.advance(0);
        }
    }
    for i in 0..20 {
        net.patch(2, P, &format!("offline-{i}"), r#"{"made":"offline"}"#);
    }
    net.reconnect(2, 0);
    net.reconnect(2, 1);
    net.advance(10_000);
    for i in 0..3 {
        assert_eq!(net.devs[i].store.checksum(P), net.devs[0].store.checksum(P), "device {i}");
    }
    assert_eq!(net.get(0, P, "offline-7").as_deref(), Some(r#"{"made":"offline"}"#));
}

/// Tombstones are purged after the retention, and the frontier rule keeps
/// a device that was away longer from bringing the deleted key back, while
/// what it wrote meanwhile still arrives.
#[test]
fn purged_tombstones_do_not_come_back_and_offline_work_is_kept() {
    const DAY: u64 = 24 * 3_600_000;
    let cfg = |n: &str| {
        let mut c = config(n);
        c.tombstone_retention_ms = 30 * DAY;
        c.maintenance_every_ms = DAY;
        c.check_every_ms = DAY;
        c
    };
    let mut net = Net::with(3, cfg, |_| Box::new(Unsigned));
    net.put(0, P, "gone", r#"{"a":1}"#);
    net.put(0, P, "kept", r#"{"a":1}"#);
    net.settle();
    net.devs[2].online = false; // away for 40 days
    net.now += DAY;
    let t = net.devs[0].store.delete(P, "gone", net.now).unwrap();
    net.drain(0);
    assert!(net.written(0).contains(&t));
    net.patch(2, P, "while-away", r#"{"by":"2"}"#);
    net.settle();
    net.advance(40 * DAY);
    assert!(net.devs[0].store.key_state(P, "gone").is_none(), "purged after 30 days");
    assert!(net.devs[1].store.key_state(P, "gone").is_none());
    assert!(net.devs[0].store.stats().tombstones_purged >= 1);
    net.reconnect(2, 0);
    net.advance(DAY / 24);
    for i in 0..3 {
        assert_eq!(net.get(i, P, "gone"), None, "device {i}: the old copy must not come back");
        assert_eq!(net.get(i, P, "while-away").as_deref(), Some(r#"{"by":"2"}"#), "device {i}");
        assert_eq!(net.devs[i].store.checksum(P), net.devs[0].store.checksum(P), "device {i}");
    }
    assert_eq!(net.devs[2].store.stats().keys_dropped, 1);
    assert!(net.devs[2].store.sync_log(0).iter().any(|l| l.reason == "deleted and purged on the peer"));
}

#[test]
fn both_sides_opening_at_once_still_converge() {
    let mut net = Net::new(2);
    net.devs[0].online = false;
    net.devs[1].online = false;
    net.put(0, P, "a", r#"{"x":1}"#);
    net.put(1, P, "b", r#"{"x":2}"#);
    net.devs[0].online = true;
    net.devs[1].online = true;
    let now = net.now;
    net.devs[0].store.start_session("dev-1", P, now);
    net.devs[1].store.start_session("dev-0", P, now);
    net.advance(20_000);
    assert_eq!(net.devs[0].store.checksum(P), net.devs[1].store.checksum(P));
    assert_eq!(net.get(0, P, "b").as_deref(), Some(r#"{"x":2}"#));
    for i in 0..2 {
        assert_eq!(net.devs[i].store.stats().sessions_failed, 0, "device {i}");
    }
}

#[test]
fn a_heartbeat_digest_that_keeps_differing_triggers_a_comparison() {
    let mut net = Net::new(2);
    net.advance(2_000); // past the first comparison
    net.devs[0].online = false;
    net.put(1, P, "a", r#"{"x":1}"#);
    net.devs[0].online = true;
    let started = net.devs[0].store.stats().sessions_started;
    // An equal digest does nothing; a differing one, after the debounce, does.
    let same = net.devs[0].store.venue_digest();
    let d1 = net.devs[1].store.venue_digest();
    net.devs[1].store.handle_peer_digest("dev-0", d1, net.now);
    net.devs[0].store.handle_peer_digest("dev-1", same, net.now);
    net.advance(5_000);
    assert_eq!(net.devs[0].store.stats().sessions_started, started);
    let theirs = net.devs[1].store.venue_digest();
    net.devs[0].store.handle_peer_digest("dev-1", theirs, net.now);
    net.advance(5_000);
    assert_eq!(net.get(0, P, "a").as_deref(), Some(r#"{"x":1}"#));
    assert_eq!(net.devs[0].store.venue_digest(), theirs);
}

#[test]
fn a_busy_peer_refuses_and_the_session_is_tried_again_later() {
    let mut net = Net::with(
        2,
        |n| {
            let mut c = config(n);
            c.max_sessions = 1;
            c
        },
        |_| Box::new(Unsigned),
    );
    net.devs[0].online = false;
    net.put(0, P, "a", r#"{"x":1}"#);
    net.put(0, "other", "a", r#"{"x":1}"#);
    net.devs[0].online = true;
    // Device 1 is busy with a session that will never answer (device 9).
    let now = net.now;
    net.devs[1].store.start_session("dev-9", "third", now);
    net.drain_all();
    net.devs[0].store.start_session("dev-1", P, now);
    net.settle();
    assert!(net.devs[0].events.iter().any(|e| matches!(e, Event::ReconciliationFailed { reason: "busy", .. })));
    net.advance(120_000);
    assert_eq!(net.get(1, P, "a").as_deref(), Some(r#"{"x":1}"#));
    assert_eq!(net.get(1, "other", "a").as_deref(), Some(r#"{"x":1}"#));
    assert!(net.devs[1].events.iter().any(|e| matches!(e, Event::ReconciliationFailed { reason: "timeout", .. })));
}
