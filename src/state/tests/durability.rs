//! Writes resolve only when durable; a crash loses exactly what was not;
//! storage failures lose nothing that was promised.

use super::*;

const P: &str = "products";

#[test]
fn a_write_resolves_and_leaves_only_after_its_op_committed() {
    let mut net = Net::new(2);
    net.devs[0].disk_ok = false;
    let t = net.put(0, P, "k", r#"{"a":1}"#);
    net.settle();
    assert!(net.written(0).is_empty(), "not durable yet");
    assert_eq!(net.get(0, P, "k").as_deref(), Some(r#"{"a":1}"#), "but readable here");
    assert_eq!(net.get(1, P, "k"), None, "and not sent");
    assert_eq!(net.devs[0].store.checksum(P), Checksum::default(), "nor served to reconciliation");
    // Group commit: more writes while the first op is in flight go into the next one.
    let t2 = net.put(0, P, "k2", r#"{"b":2}"#);
    let t3 = net.patch(0, P, "k", r#"{"c":3}"#);
    assert_eq!(net.devs[0].held.len(), 1);
    let op = net.devs[0].held.remove(0);
    net.devs[0].disk.apply(&op);
    net.devs[0].store.handle_persisted(op.op, Ok(()), net.now);
    net.drain(0);
    assert_eq!(net.written(0), vec![t]);
    assert_eq!(net.devs[0].held.len(), 1, "the next op carries both later writes");
    assert_eq!(net.devs[0].held[0].keys.len(), 2);
    // ...and hands them to the upstream drain as one idempotent command
    // (one per op and collection, not per write).
    let up = &net.devs[0].held[0].upstream;
    assert_eq!(up.len(), 1);
    assert!(up.iter().all(|c| c.id.len() == 35 && c.id.starts_with("st-") && c.topic == "state/products"));
    assert!(matches!(wire::decode(&up[0].payload), Ok(StateMsg::Writes(b)) if b.keys.len() == 2));
    net.devs[0].disk_ok = true;
    let op = net.devs[0].held.remove(0);
    net.devs[0].disk.apply(&op);
    net.devs[0].store.handle_persisted(op.op, Ok(()), net.now);
    net.drain(0);
    net.settle();
    assert_eq!(net.written(0), vec![t, t2, t3]);
    assert_eq!(net.get(1, P, "k").as_deref(), Some(r#"{"a":1,"c":3}"#));
    assert_eq!(net.devs[1].store.checksum(P), net.devs[0].store.checksum(P));
}

#[test]
fn a_crash_loses_exactly_the_writes_that_were_not_durable() {
    let mut net = Net::new(2);
    net.put(0, P, "kept", r#"{"a":1}"#);
    net.settle();
    net.devs[0].disk_ok = false;
    net.put(0, P, "lost", r#"{"a":2}"#);
    net.patch(0, P, "kept", r#"{"a":3}"#);
    net.restart(0);
    assert_eq!(net.get(0, P, "kept").as_deref(), Some(r#"{"a":1}"#));
    assert_eq!(net.get(0, P, "lost"), None);
    assert_eq!(net.get(1, P, "lost"), None, "an unacknowledged write never left the device");
    // The clock resumes above what was stored: a new write beats the old one
    // even if the wall clock went back.
    net.devs[0].disk_ok = true;
    net.now -= 3_600_000;
    net.patch(0, P, "kept", r#"{"a":4}"#);
    net.settle();
    assert_eq!(net.get(1, P, "kept").as_deref(), Some(r#"{"a":4}"#));
    // Sequence numbers resume after the last durable one, without a gap.
    let w = net.devs[0].store.key_state(P, "kept").unwrap().live().iter().map(|w| w.seq).max();
    assert_eq!(w, Some(2));
}

#[test]
fn a_reload_restores_state_audit_and_frontier() {
    let mut net = Net::new(2);
    net.put(0, P, "k", r#"{"a":1}"#);
    net.settle();
    net.devs[1].online = false;
    net.patch(0, P, "k", r#"{"a":2}"#);
    net.patch(1, P, "k", r#"{"a":3}"#);
    net.reconnect(0, 1);
    net.advance(5_000);
    let (sum, conflicts, log) = (net.devs[0].store.checksum(P), net.conflicts(0), net.devs[0].store.sync_log(0).len());
    assert_eq!(conflicts.len(), 1);
    net.restart(0);
    assert_eq!(net.devs[0].store.checksum(P), sum);
    assert_eq!(net.conflicts(0), conflicts);
    assert!(net.devs[0].store.sync_log(0).len() >= log);
    // The frontier came back too: device 1's write is not applied twice.
    let w = net.devs[1].store.key_state(P, "k").unwrap().live().iter().find(|w| &*w.id.writer == "dev-1").unwrap().clone();
    let body = StateMsg::Writes(wire::WriteBatch { collection: P.into(), keys: vec![(Rc::from("k"), vec![w])] }).encode().unwrap();
    let dups = net.devs[0].store.stats().duplicates;
    net.devs[0].store.handle_body("dev-1", &body, net.now).unwrap();
    assert_eq!(net.devs[0].store.stats().duplicates, dups + 1);
    assert_eq!(net.conflicts(0).len(), 1, "a duplicate is not audited again");
}

#[test]
fn a_failed_transaction_rejects_its_writes_and_retries_the_rest() {
    let mut net = Net::new(2);
    net.put(0, P, "k", r#"{"a":1}"#);
    net.settle();
    net.devs[1].disk_ok = false;
    net.put(0, P, "k2", r#"{"b":1}"#);
    net.settle(); // device 1 applied it and asked to persist it
    let t = net.put(1, P, "mine", r#"{"c":1}"#); // waits behind that op
    let op = net.devs[1].held.remove(0);
    assert!(op.keys.iter().all(|k| k.key == "k2"));
    net.devs[1].store.handle_persisted(op.op, Err("AbortError".into()), net.now);
    net.drain(1);
    assert!(net.devs[1].held.is_empty(), "retried only after a backoff");
    net.now += 2_500;
    net.devs[1].store.handle_timeout(net.now);
    net.drain(1);
    let op = net.devs[1].held.remove(0);
    assert_eq!(op.keys.len(), 2, "the retry carries the received key and the local write");
    net.devs[1].store.handle_persisted(op.op, Err("QuotaExceededError".into()), net.now);
    net.drain(1);
    assert!(net.devs[1].events.iter().any(|e| matches!(e, Event::WriteFailed { tickets, .. } if tickets == &vec![t])));
    assert_eq!(net.get(1, P, "mine"), None, "a failed write is not applied");
    assert_eq!(net.get(0, P, "mine"), None);
    assert_eq!(net.get(1, P, "k2").as_deref(), Some(r#"{"b":1}"#), "received state stays");
    net.devs[1].disk_ok = true;
    net.advance(10_000);
    assert!(net.devs[1].disk.keys.contains_key(&(P.to_string(), "k2".to_string())), "the retry wrote it");
    // The next local write reuses the sequence number of the failed one.
    net.put(1, P, "mine", r#"{"c":2}"#);
    net.settle();
    assert_eq!(net.devs[1].store.key_state(P, "mine").unwrap().live()[0].seq, 1);
    assert_eq!(net.get(0, P, "mine").as_deref(), Some(r#"{"c":2}"#));
    assert_eq!(net.devs[1].store.stats().persist_failures, 2);
}

#[test]
fn unreadable_records_are_skipped_logged_and_left_alone() {
    let mut net = Net::new(1);
    net.put(0, P, "good", r#"{"a":1}"#);
    let mut loaded = net.devs[0].disk.loaded();
    loaded.keys.push((P.into(), "bad".into(), vec![1, 200, 3]));
    loaded.collections.push(("x".into(), vec![]));
    loaded.conflicts.push(vec![9, 9]);
    let mut s = Store::new(config("dev-0"), 5, Box::new(Unsigned)).unwrap();
    s.handle_loaded(loaded, T0);
    assert_eq!(s.get(P, "good").as_deref(), Some(r#"{"a":1}"#));
    assert_eq!(s.stats().refused, 2);
    assert_eq!(s.sync_log(0).iter().filter(|l| l.status == SyncStatus::Error).count(), 2);
    // Nothing asks to delete the bad record.
    while let Some(o) = s.poll_output() {
        if let Output::Persist(op) = o {
            assert!(op.keys.iter().all(|k| k.key != "bad"));
        }
    }
}

#[test]
fn the_audit_is_bounded_and_pruned_by_age() {
    let mut cfg = config("dev-1");
    cfg.max_conflicts = 3;
    cfg.audit_retention_ms = 60_000;
    cfg.maintenance_every_ms = 10_000;
    let mut net = Net::with(2, |n| if n == "dev-1" { cfg.clone() } else { config(n) }, |_| Box::new(Unsigned));
    for round in 0..5 {
        net.devs[1].online = false;
        net.patch(0, P, "k", &format!(r#"{{"a":{round}}}"#));
        net.patch(1, P, "k", &format!(r#"{{"a":{}}}"#, round + 100));
        net.reconnect(1, 0);
        net.advance(6_000);
    }
    assert_eq!(net.conflicts(1).len(), 3);
    assert_eq!(net.devs[1].disk.conflicts.len(), 3, "storage mirrors the bound");
    net.advance(120_000);
    assert!(net.conflicts(1).is_empty());
    assert!(net.devs[1].disk.conflicts.is_empty());
    assert!(net.devs[1].store.sync_log(0).is_empty());
}

#[test]
fn increments_behind_a_failed_transaction_are_recounted() {
    let mut net = Net::new(2);
    net.devs[0].disk_ok = false;
    let inc = |net: &mut Net, delta| {
        let now = net.now;
        let t = net.devs[0].store.increment("stock", "s", "qty", delta, now).unwrap();
        net.drain(0);
        t
    };
    let first = inc(&mut net, 5);
    let second = inc(&mut net, 3); // counted on top of the first while it is written
    assert_eq!(net.get(0, "stock", "s").as_deref(), Some(r#"{"qty":8}"#));
    let op = net.devs[0].held.remove(0);
    net.devs[0].store.handle_persisted(op.op, Err("AbortError".into()), net.now);
    net.drain(0);
    assert!(net.devs[0].events.iter().any(|e| matches!(e, Event::WriteFailed { tickets, .. } if tickets == &vec![first])));
    net.devs[0].disk_ok = true;
    net.advance(10_000);
    assert_eq!(net.written(0), vec![second]);
    for i in 0..2 {
        assert_eq!(net.get(i, "stock", "s").as_deref(), Some(r#"{"qty":3}"#), "device {i}");
    }
}
