//! The clock check (issue #16): far-future stamps are neither merged nor
//! kept fresh, one message stamped +55 s does not drag the clock, and a
//! device whose clock is far from the venue's says so.

use super::*;

fn hb() -> Body {
    Body::Heartbeat { term: None, hub: None, score: 1, queue_depth: 0, ended: false, direct_only: false }
}

#[test]
fn a_plus_55_s_stamp_does_not_drag_the_clock_and_a_far_future_one_is_dropped() {
    let mut net = elected(5);
    let pos = 1;
    let before = net.node(pos).stats();
    let k = key();
    let now_wall = WALL0 + net.now;
    // One heartbeat stamped 55 s ahead (within the HLC's 60 s max drift):
    // delivered, but not merged into the clock.
    net.inject(pos, &topics::heartbeat(VENUE, "ghost"), craft(&k, Kind::Heartbeat, "ghost", 1, now_wall + 55_000, &hb()), false);
    let s = net.node(pos).stats();
    assert_eq!(s.counters.clock_ahead, before.counters.clock_ahead + 1);
    assert_eq!(s.security.clock_ahead, s.counters.clock_ahead, "gathered into security");
    assert!(s.hlc.wall_ms() < now_wall + 5_000, "the clock stayed near real time: {} ms ahead", s.hlc.wall_ms() - now_wall);
    // Ten minutes ahead: as far in the future as a stale one is in the
    // past, dropped (it would stay "fresh" for replays that long).
    net.inject(pos, &topics::heartbeat(VENUE, "ghost2"), craft(&k, Kind::Heartbeat, "ghost2", 1, now_wall + 600_000, &hb()), false);
    let s = net.node(pos).stats();
    assert_eq!(s.counters.future_event, before.counters.future_event + 1);
    assert_eq!(s.security.future, s.counters.future_event);
    assert!(!s.peers.iter().any(|p| p.device == "ghost2"), "not delivered to the election");
    assert_accounted(&s);
}

#[test]
fn a_device_far_behind_the_venue_reports_clock_skew_and_its_end() {
    let mut n = lone(DeviceInfo::default(), &MeshState::default());
    let k = key();
    drain_all(&mut n, 0);
    // Our wall clock is 200 s behind three peers'.
    for (i, peer) in ["a-1", "b-2", "c-3"].iter().enumerate() {
        let t = 10 + i as u64;
        let payload = craft(&k, Kind::Heartbeat, peer, 1, WALL0 + t + 200_000, &hb());
        n.handle_message(&topics::heartbeat(VENUE, peer), &payload, false, t, WALL0 + t);
    }
    n.handle_timeout(20);
    let events: Vec<MeshEvent> = drain_all(&mut n, 20)
        .into_iter()
        .filter_map(|o| match o {
            Output::Event(e @ MeshEvent::ClockSkew { .. }) => Some(e),
            _ => None,
        })
        .collect();
    assert_eq!(events.len(), 1, "reported once");
    assert!(matches!(events[0], MeshEvent::ClockSkew { skewed: true, offset_ms } if (199_990..=200_000).contains(&offset_ms)), "{events:?}");
    let s = n.stats();
    assert!(s.clock_skewed);
    assert_eq!(s.counters.future_event, 3, "their heartbeats look far ahead to us");
    // Clock fixed: the same peers' fresh heartbeats agree with ours.
    for (i, peer) in ["a-1", "b-2", "c-3"].iter().enumerate() {
        let t = 1_000 + i as u64;
        let payload = craft(&k, Kind::Heartbeat, peer, 2, WALL0 + t, &hb());
        n.handle_message(&topics::heartbeat(VENUE, peer), &payload, false, t, WALL0 + t);
    }
    n.handle_timeout(1_010);
    let back = drain_all(&mut n, 1_010).into_iter().any(|o| matches!(o, Output::Event(MeshEvent::ClockSkew { skewed: false, .. })));
    assert!(back, "the end of the skew is reported too");
    assert!(!n.stats().clock_skewed);
}
