//! Bulk: 10,000 local writes at once and a fresh device catching up on
//! them, through the bare stores (no IndexedDB, no signatures). What the
//! core costs per record, and the shape of what it asks the shell to do:
//! how many storage ops and upstream commands, how big.

use std::time::Instant;

use super::*;

fn doc(i: usize) -> String {
    format!(
        "{{\"name\":\"Product number {i}\",\"sku\":\"sku-{i:06}\",\"price\":{},\"qty\":{},\"site\":\"bar\",\"tags\":[\"drink\",\"hot\"]}}",
        3.5 + (i % 50) as f64,
        i % 97
    )
}

/// 10,000 puts made before any storage op completes: the core's share of
/// the time and the ops it asks for.
#[test]
fn bulk_figures() {
    let n: usize = std::env::var("STATE_BULK_N").ok().and_then(|s| s.parse().ok()).unwrap_or(10_000);
    let mut net = Net::new(2);
    net.devs[0].disk_ok = false;
    let t = Instant::now();
    for i in 0..n {
        net.devs[0].store.put("bench", &format!("sku-{i:06}"), &doc(i), None, T0).unwrap();
    }
    net.drain(0);
    let t_put = t.elapsed();
    let held = std::mem::take(&mut net.devs[0].held);
    net.devs[0].disk_ok = true;
    let t = Instant::now();
    for op in held {
        eprintln!("# op {:?}: {} keys, {} upstream commands", op.op, op.keys.len(), op.upstream.len());
        net.devs[0].disk.apply(&op);
        net.devs[0].store.handle_persisted(op.op, Ok(()), T0);
        net.drain(0);
    }
    let t_persist = t.elapsed();
    let mut ops = 0;
    let mut upstream = 0;
    while let Some(out) = net.devs[0].store.poll_output() {
        if let Output::Persist(op) = out {
            ops += 1;
            upstream += op.upstream.len();
            net.devs[0].disk.apply(&op);
            net.devs[0].store.handle_persisted(op.op, Ok(()), T0);
        }
    }
    eprintln!("# {n} puts: {t_put:?} to queue, {t_persist:?} to persist; {ops} more ops, {upstream} more upstream");
    assert_eq!(net.devs[0].store.stats().local_writes, n as u64);
    net.wire.clear();
    // A fresh device catches up.
    let mut fresh = Store::new(config("dev-9"), 7, Box::new(Unsigned)).unwrap();
    fresh.handle_loaded(Loaded::default(), T0);
    net.devs[1].store = fresh;
    net.devs[1].disk = MemoryDisk::default();
    let t = Instant::now();
    let id1 = net.id(1);
    net.devs[0].store.handle_peer(&id1, false, T0);
    net.devs[0].store.handle_peer(&id1, true, T0);
    net.advance(10_000);
    let t_catch = t.elapsed();
    assert_eq!(net.devs[1].store.checksum("bench"), net.devs[0].store.checksum("bench"));
    eprintln!(
        "# fresh device caught up on {n} in {t_catch:?}: {} conflicts, {} sync-log rows",
        net.devs[1].store.conflicts(0, None).len(),
        net.devs[1].store.sync_log(0).len()
    );
}

/// Every write of an op is in exactly one upstream command, whatever the
/// op holds; no payload passes the message limit; ids are unique. Writes
/// with long contexts (many devices) and a small limit force the estimate
/// and the halving to work. Failed before: one command per write (10,000
/// commands for 10,000 writes).
#[test]
fn upstream_commands_carry_each_write_once_within_the_limit() {
    for (max, n, devices) in [(60 * 1024, 3_000usize, 1usize), (1024, 400, 40), (2048, 60, 100)] {
        let cfg = move |name: &str| {
            let mut c = config(name);
            c.max_upstream_bytes = max;
            c
        };
        let mut net = Net::with(2, cfg, |_| Box::new(Unsigned));
        // Contexts naming many devices: remote writes by `devices` writers on one key.
        for d in 0..devices {
            let mut other = Store::new(config(&format!("w-{d}")), d as u64, Box::new(Unsigned)).unwrap();
            other.handle_loaded(Loaded::default(), T0);
            other.put("c", "shared", "{\"x\":1}", None, T0).unwrap();
            while let Some(o) = other.poll_output() {
                match o {
                    Output::Persist(op) => other.handle_persisted(op.op, Ok(()), T0),
                    Output::Broadcast(body) => net.devs[0].store.handle_body(&format!("w-{d}"), &body, T0).unwrap(),
                    _ => {}
                }
            }
        }
        net.drain(0);
        net.devs[0].disk_ok = false;
        for i in 0..n {
            let key = if i % 7 == 0 { "shared".to_string() } else { format!("k-{i}") };
            net.devs[0].store.put("c", &key, &doc(i), None, T0).unwrap();
        }
        net.drain(0);
        let mut seen = std::collections::BTreeSet::new();
        let mut ids = std::collections::BTreeSet::new();
        let mut commands = 0;
        loop {
            let held = std::mem::take(&mut net.devs[0].held);
            if held.is_empty() {
                break;
            }
            let mut upstream = Vec::new();
            for op in held {
                upstream.extend(op.upstream.iter().cloned());
                net.devs[0].disk.apply(&op);
                net.devs[0].store.handle_persisted(op.op, Ok(()), T0);
            }
            net.drain(0);
            for u in &upstream {
                commands += 1;
                assert!(u.payload.len() <= max, "a {} B payload over {max}", u.payload.len());
                assert!(ids.insert(u.id.clone()), "two commands share an id");
                let StateMsg::Writes(b) = super::wire::decode(&u.payload).unwrap() else { panic!("not a write batch") };
                let (k0, w0) = (&b.keys[0].0, &b.keys[0].1[0]);
                assert_eq!(u.id, upstream_write_id("c", k0, w0), "a command's id is its first write's");
                for (k, ws) in &b.keys {
                    for w in ws {
                        assert!(seen.insert((k.to_string(), w.seq)), "write {k}#{} twice", w.seq);
                    }
                }
            }
        }
        assert_eq!(seen.len(), n, "every write goes up once (max {max}, {devices} devices)");
        assert!(commands * 2 <= n, "{commands} commands for {n} writes: not batched");
        eprintln!("# {n} writes, {devices} devices in contexts, limit {max} B: {commands} commands");
    }
}

/// A catch-up session reports how long it really took on the side that
/// takes the keys: each delivered message takes 10 ms here, so a session
/// that moved 2,000 keys in many messages lasted at least that many times
/// 10 ms there, whichever side opened it. (The side that sends everything
/// in answer to one message ends its part within that input: its own
/// duration is only as long as its part.)
#[test]
fn a_catch_up_session_reports_its_real_duration() {
    for opener in [0usize, 1] {
        let mut net = Net::new(2);
        net.devs[1].online = false;
        for i in 0..2_000 {
            net.devs[0].store.put("bench", &format!("sku-{i:06}"), &doc(i), None, net.now).unwrap();
        }
        net.drain(0);
        net.wire.clear();
        net.devs[1].online = true;
        let peer = net.id(1 - opener);
        let now = net.now;
        net.devs[opener].store.start_session(&peer, "bench", now);
        net.drain(opener);
        let mut messages = 0u64;
        while let Some((from, to, body)) = net.wire.pop_front() {
            net.now += 10;
            messages += 1;
            let sender = net.id(from);
            let now = net.now;
            net.devs[to].store.handle_body(&sender, &body, now).unwrap();
            net.drain(to);
        }
        assert_eq!(net.devs[1].store.checksum("bench"), net.devs[0].store.checksum("bench"));
        for d in 0..2 {
            let done: Vec<SessionSummary> = net.devs[d]
                .events
                .iter()
                .filter_map(|e| match e {
                    Event::ReconciliationCompleted { summary, .. } => Some(*summary),
                    _ => None,
                })
                .collect();
            eprintln!("# opener dev-{opener}, dev-{d}: {messages} messages, {done:?}");
            assert_eq!(done.len(), 1, "one session on dev-{d}");
            if d == 1 {
                assert!(done[0].keys_received >= 2_000);
                assert!(done[0].duration_ms >= 10 * (messages - 2), "dev-1 (opener dev-{opener}) reports {} ms for {messages} messages 10 ms apart", done[0].duration_ms);
            }
        }
    }
}

/// Every body the store sends — broadcasts of 2,000 writes made at once,
/// and both directions of a catch-up session on them, whichever side opens
/// it — stays within `max_message_bytes` unless it carries a single write
/// (one larger write goes alone), and the default limit is small: Mosquitto
/// 2.0 delivers packets over 4 KB to WebSocket clients a piece per turn of
/// its event loop (a 1.85 MB catch-up in 38 messages of 50 KB took 23 s to
/// arrive in `scripts/bench state`, and the heartbeats queued behind it were
/// late). Failed before: the default was 60 KiB, bodies of ~50 KB.
#[test]
fn state_bodies_stay_within_the_message_limit() {
    let max = Config::new("x").max_message_bytes;
    assert!(max <= 4096, "the default message limit is {max} B: large packets crawl through Mosquitto's WebSockets");
    let big = format!("{{\"blob\":\"{}\"}}", "x".repeat(3 * max));
    let writes_in = |body: &[u8]| match super::wire::decode(body).unwrap() {
        StateMsg::Writes(b) => b.keys.iter().map(|(_, ws)| ws.len()).sum::<usize>(),
        StateMsg::Reconcile(r) => r.keys.iter().map(|(_, ws)| ws.len()).sum::<usize>(),
        StateMsg::Checksums(_) => 0,
    };
    for opener in [0usize, 1] {
        let mut net = Net::new(2);
        net.devs[1].online = false;
        for i in 0..2_000 {
            let v = if i == 777 { big.clone() } else { doc(i) };
            net.devs[0].store.put("bench", &format!("sku-{i:06}"), &v, None, net.now).unwrap();
        }
        net.drain(0);
        let (mut bodies, mut over) = (0usize, 0usize);
        for (_, _, body) in net.wire.drain(..) {
            bodies += 1;
            if body.len() > max {
                assert_eq!(writes_in(&body), 1, "a {} B broadcast over {max} B with several writes", body.len());
                over += 1;
            }
        }
        assert!(bodies > 2_000 * 150 / max, "2,000 writes in {bodies} broadcasts: not cut");
        assert_eq!(over, 1, "only the single large write goes alone");
        net.devs[1].online = true;
        let peer = net.id(1 - opener);
        let now = net.now;
        net.devs[opener].store.start_session(&peer, "bench", now);
        net.drain(opener);
        let mut messages = 0usize;
        while let Some((from, to, body)) = net.wire.pop_front() {
            messages += 1;
            assert!(body.len() <= max || writes_in(&body) == 1, "a {} B session message over {max} B with several writes", body.len());
            let sender = net.id(from);
            let now = net.now;
            net.devs[to].store.handle_body(&sender, &body, now).unwrap();
            net.drain(to);
        }
        assert!(messages > 2_000 * 150 / max, "the catch-up in {messages} messages: not cut");
        assert_eq!(net.devs[1].store.checksum("bench"), net.devs[0].store.checksum("bench"));
    }
}
