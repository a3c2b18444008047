//! Unit tests of the replicator: placement, quorum, storing replicas,
//! re-replication, the hub's drain. The seeded runs with faults are in
//! `sim::replication`.

use std::rc::Rc;

use super::*;
use crate::outbox::CommandId;

fn cmd(id: &str, origin: &str, created_at: u64) -> Rc<Cmd> {
    Rc::new(Cmd { id: CommandId::new(id), origin: origin.into(), topic: "sale".into(), hlc: 0, created_at, payload: vec![1, 2, 3], origin_sig: [0; 64] })
}

fn view(peers: &[(&str, u64)], hub: Option<&str>, acting: bool) -> View {
    View {
        peers: peers.iter().map(|(id, score)| PeerView { id: (*id).into(), score: *score, replica: true }).collect(),
        hub: hub.map(Into::into),
        acting,
    }
}

fn outputs(r: &mut Replicator) -> Vec<Output> {
    std::iter::from_fn(|| r.poll_output()).collect()
}

fn sends(out: &[Output]) -> Vec<(String, Vec<String>)> {
    out.iter()
        .filter_map(|o| match o {
            Output::Send { to, msg: RepMsg::Replicate(cmds) } => {
                Some((to.clone(), cmds.iter().map(|c| c.id.as_str().to_owned()).collect()))
            }
            _ => None,
        })
        .collect()
}

fn ids(v: &[&str]) -> Vec<CommandId> {
    v.iter().map(|s| CommandId::new(*s)).collect()
}

fn durable(ids_: &[&str]) -> RepMsg {
    RepMsg::SyncAck(ids(ids_).into_iter().map(|i| (i, AckState::Durable)).collect())
}

#[test]
fn replicates_to_the_hub_then_the_best_scores_and_acks_at_majority() {
    let mut r = Replicator::new("a", Config::default(), 0);
    r.handle_view(view(&[("b", 500), ("c", 900), ("d", 700)], Some("b"), false), 0);
    r.handle_committed(vec![cmd("a-1", "a", 0)], 10);
    let out = outputs(&mut r);
    // factor 3 counting the origin: two targets, the hub first, then the best score.
    assert_eq!(sends(&out), vec![("b".into(), vec!["a-1".into()]), ("c".into(), vec!["a-1".into()])]);
    assert!(!out.iter().any(|o| matches!(o, Output::PeerAcked(_))));

    r.handle_message("c", durable(&["a-1"]), 20);
    assert_eq!(outputs(&mut r), vec![Output::PeerAcked(ids(&["a-1"]))]);
    // The second ack changes nothing visible; the command stays held until the cloud has it.
    r.handle_message("b", durable(&["a-1"]), 21);
    assert_eq!(outputs(&mut r), vec![]);
    assert_eq!(r.holders("a-1").unwrap(), vec!["b".to_string(), "c".to_string()]);
    assert_eq!(r.stats().held, 1);
}

#[test]
fn fewer_devices_than_the_factor() {
    // Alone: nothing to send, the command stays below the quorum (pending).
    let mut alone = Replicator::new("a", Config::default(), 0);
    alone.handle_committed(vec![cmd("a-1", "a", 0)], 0);
    assert_eq!(outputs(&mut alone), vec![]);
    assert_eq!(alone.stats().below_quorum, 1);
    // Two devices: origin + one replica is a majority of 3.
    let mut two = Replicator::new("a", Config::default(), 0);
    two.handle_view(view(&[("b", 1)], None, false), 0);
    two.handle_committed(vec![cmd("a-1", "a", 0)], 0);
    assert_eq!(sends(&outputs(&mut two)), vec![("b".into(), vec!["a-1".into()])]);
    two.handle_message("b", durable(&["a-1"]), 5);
    assert_eq!(outputs(&mut two), vec![Output::PeerAcked(ids(&["a-1"]))]);
    // Factor 1: the origin alone is the quorum.
    let mut one = Replicator::new("a", Config { factor: 1, ..Config::default() }, 0);
    one.handle_view(view(&[("b", 1)], None, false), 0);
    one.handle_committed(vec![cmd("a-1", "a", 0)], 0);
    assert_eq!(outputs(&mut one), vec![Output::PeerAcked(ids(&["a-1"]))]);
}

#[test]
fn a_replica_is_acked_only_after_its_commit() {
    let mut r = Replicator::new("b", Config::default(), 0);
    r.handle_view(view(&[("a", 1), ("c", 2)], Some("b"), false), 0);
    r.handle_message("a", RepMsg::Replicate(vec![cmd("a-1", "a", 0)]), 1);
    assert_eq!(outputs(&mut r), vec![Output::Store(vec![cmd("a-1", "a", 0)])]);
    // The same command from someone else while the write is in flight: one write, two acks.
    r.handle_message("c", RepMsg::Replicate(vec![cmd("a-1", "a", 0)]), 2);
    assert_eq!(outputs(&mut r), vec![]);
    r.handle_stored(&ids(&["a-1"]), 3);
    let out = outputs(&mut r);
    assert_eq!(
        out,
        vec![
            Output::Send { to: "a".into(), msg: durable(&["a-1"]) },
            Output::Send { to: "c".into(), msg: durable(&["a-1"]) },
        ]
    );
    // Already held: acked at once, nothing written again.
    r.handle_message("a", RepMsg::Replicate(vec![cmd("a-1", "a", 0)]), 4);
    assert_eq!(outputs(&mut r), vec![Output::Send { to: "a".into(), msg: durable(&["a-1"]) }]);
    // A failed write sends no ack, and the next request tries again.
    r.handle_message("a", RepMsg::Replicate(vec![cmd("a-2", "a", 0)]), 5);
    assert_eq!(outputs(&mut r).len(), 1);
    r.handle_store_failed(&ids(&["a-2"]), 6);
    assert_eq!(outputs(&mut r), vec![]);
    r.handle_message("a", RepMsg::Replicate(vec![cmd("a-2", "a", 0)]), 7);
    assert_eq!(outputs(&mut r), vec![Output::Store(vec![cmd("a-2", "a", 0)])]);
}

#[test]
fn cloud_acked_commands_are_answered_as_such() {
    let mut r = Replicator::new("b", Config::default(), 0);
    r.handle_message("ingest", RepMsg::CloudAck(ids(&["a-1"])), 1);
    assert_eq!(outputs(&mut r), vec![]);
    r.handle_message("a", RepMsg::Replicate(vec![cmd("a-1", "a", 0)]), 2);
    assert_eq!(
        outputs(&mut r),
        vec![Output::Send { to: "a".into(), msg: RepMsg::SyncAck(vec![(CommandId::new("a-1"), AckState::CloudAcked)]) }]
    );
    // The origin takes such an answer as the cloud ack.
    let mut a = Replicator::new("a", Config::default(), 0);
    a.handle_view(view(&[("b", 1)], None, false), 0);
    a.handle_committed(vec![cmd("a-1", "a", 0)], 0);
    outputs(&mut a);
    a.handle_message("b", RepMsg::SyncAck(vec![(CommandId::new("a-1"), AckState::CloudAcked)]), 3);
    assert_eq!(outputs(&mut a), vec![Output::CloudAcked(ids(&["a-1"]))]);
    assert_eq!(a.stats().held, 0);
}

#[test]
fn resends_after_the_ack_timeout_then_tries_the_next_device() {
    let cfg = Config { ack_timeout_ms: 100, max_tries: 2, ..Config::default() };
    let mut r = Replicator::new("a", cfg, 0);
    r.handle_view(view(&[("b", 9), ("c", 8), ("d", 7)], None, false), 0);
    r.handle_committed(vec![cmd("a-1", "a", 0)], 0);
    assert_eq!(sends(&outputs(&mut r)).len(), 2);
    r.handle_message("c", durable(&["a-1"]), 10);
    outputs(&mut r);
    assert_eq!(r.poll_timeout(), Some(100));
    r.handle_timeout(100);
    assert_eq!(sends(&outputs(&mut r)), vec![("b".into(), vec!["a-1".into()])]);
    r.handle_timeout(200);
    // b had its two tries: d gets it.
    assert_eq!(sends(&outputs(&mut r)), vec![("d".into(), vec!["a-1".into()])]);
}

#[test]
fn a_departed_holder_is_replaced_by_the_next_best() {
    let mut r = Replicator::new("a", Config::default(), 0);
    r.handle_view(view(&[("b", 9), ("c", 8), ("d", 7)], None, false), 0);
    r.handle_committed(vec![cmd("a-1", "a", 0)], 0);
    outputs(&mut r);
    r.handle_message("b", durable(&["a-1"]), 1);
    r.handle_message("c", durable(&["a-1"]), 1);
    outputs(&mut r);
    r.handle_view(view(&[("c", 8), ("d", 7)], None, false), 2);
    assert_eq!(sends(&outputs(&mut r)), vec![("d".into(), vec!["a-1".into()])]);
}

#[test]
fn replica_holders_take_over_when_the_origin_is_gone_and_feed_a_new_hub() {
    let mut r = Replicator::new("b", Config::default(), 0);
    r.handle_view(view(&[("a", 1), ("c", 5), ("d", 4)], Some("c"), false), 0);
    r.handle_message("a", RepMsg::Replicate(vec![cmd("a-1", "a", 0)]), 1);
    outputs(&mut r);
    r.handle_stored(&ids(&["a-1"]), 2);
    outputs(&mut r);
    // Origin alive: the replica does nothing on its own.
    r.handle_view(view(&[("a", 1), ("c", 5), ("d", 6)], Some("c"), false), 3);
    assert_eq!(sends(&outputs(&mut r)), vec![]);
    // Origin gone: this holder restores the factor, hub first.
    r.handle_view(view(&[("c", 5), ("d", 6)], Some("c"), false), 4);
    assert_eq!(sends(&outputs(&mut r)), vec![("c".into(), vec!["a-1".into()]), ("d".into(), vec!["a-1".into()])]);
}

#[test]
fn a_replica_is_reoffered_to_the_hub_when_old() {
    let cfg = Config { reoffer_after_ms: 1_000, ..Config::default() };
    let mut r = Replicator::new("b", cfg, 0);
    r.handle_view(view(&[("a", 1), ("c", 5)], Some("c"), false), 0);
    r.handle_message("a", RepMsg::Replicate(vec![cmd("a-1", "a", 0)]), 1);
    r.handle_stored(&ids(&["a-1"]), 2);
    outputs(&mut r);
    assert_eq!(r.poll_timeout(), Some(1_000));
    r.handle_timeout(1_000);
    assert_eq!(sends(&outputs(&mut r)), vec![]);
    r.handle_timeout(2_000);
    assert_eq!(sends(&outputs(&mut r)), vec![("c".into(), vec!["a-1".into()])]);
    r.handle_message("c", durable(&["a-1"]), 2_010);
    r.handle_timeout(3_000);
    assert_eq!(sends(&outputs(&mut r)), vec![]);
}

#[test]
fn a_copy_placed_by_a_holder_is_offered_to_the_hub_at_once() {
    // Origin "a" is gone for holder "d", which re-places the copy on "b".
    // The command may already be in the cloud: "b" asks the hub ("c") now,
    // not after `reoffer_after_ms`, and learns its CLOUD_ACK from the answer.
    let mut r = Replicator::new("b", Config::default(), 0);
    r.handle_view(view(&[("c", 5), ("d", 6)], Some("c"), false), 0);
    r.handle_message("d", RepMsg::Replicate(vec![cmd("a-1", "a", 0)]), 1);
    outputs(&mut r);
    r.handle_stored(&ids(&["a-1"]), 2);
    assert!(sends(&outputs(&mut r)).contains(&("c".into(), vec!["a-1".into()])));
    r.handle_message("c", RepMsg::SyncAck(vec![(CommandId::new("a-1"), AckState::CloudAcked)]), 3);
    assert!(outputs(&mut r).iter().any(|o| matches!(o, Output::CloudAcked(ids) if ids.len() == 1)));
    // A copy sent by its origin waits for the re-offer as before.
    r.handle_message("a", RepMsg::Replicate(vec![cmd("a-2", "a", 0)]), 4);
    outputs(&mut r);
    r.handle_stored(&ids(&["a-2"]), 5);
    assert_eq!(sends(&outputs(&mut r)), vec![]);
}

fn uploads(out: &[Output]) -> Vec<(u64, Vec<String>)> {
    out.iter()
        .filter_map(|o| match o {
            Output::Publish(RepMsg::Upload { batch, cmds }) | Output::Upload { batch, cmds } => {
                Some((*batch, cmds.iter().map(|c| c.id.as_str().to_owned()).collect()))
            }
            _ => None,
        })
        .collect()
}

#[test]
fn the_hub_drains_in_batches_oldest_first() {
    let cfg = Config { batch_max: 2, drain_interval_ms: 1_000, ..Config::default() };
    let mut r = Replicator::new("h", cfg, 0);
    r.handle_view(view(&[], Some("h"), false), 0);
    r.handle_committed(vec![cmd("h-1", "h", 5)], 0);
    assert_eq!(uploads(&outputs(&mut r)), vec![]);
    // Becoming the hub drains at once.
    r.handle_view(view(&[], Some("h"), true), 1);
    assert_eq!(uploads(&outputs(&mut r)), vec![(1, vec!["h-1".into()])]);
    // One batch in flight at a time.
    r.handle_committed(vec![cmd("h-3", "h", 3), cmd("h-2", "h", 2), cmd("h-4", "h", 4)], 2);
    assert_eq!(uploads(&outputs(&mut r)), vec![]);
    r.handle_message("ingest", RepMsg::CloudAck(ids(&["h-1"])), 3);
    // A full batch waits: it goes at once, oldest first.
    assert_eq!(outputs(&mut r), vec![Output::CloudAcked(ids(&["h-1"])), Output::Publish(RepMsg::Upload { batch: 2, cmds: vec![cmd("h-2", "h", 2), cmd("h-3", "h", 3)] })]);
    r.handle_message("ingest", RepMsg::CloudAck(ids(&["h-2", "h-3"])), 4);
    // The batch was full: the rest follows at once.
    assert_eq!(uploads(&outputs(&mut r)), vec![(3, vec!["h-4".into()])]);
    r.handle_message("ingest", RepMsg::CloudAck(ids(&["h-4"])), 5);
    outputs(&mut r);
    // A lone new command waits for the interval.
    r.handle_committed(vec![cmd("h-5", "h", 6)], 6);
    assert_eq!(uploads(&outputs(&mut r)), vec![]);
    let at = r.poll_timeout().unwrap();
    r.handle_timeout(at);
    assert_eq!(uploads(&outputs(&mut r)), vec![(4, vec!["h-5".into()])]);
}

#[test]
fn upload_timeouts_back_off_and_a_new_hub_retries() {
    let cfg = Config { upload_timeout_ms: 100, ..Config::default() };
    let mut r = Replicator::new("h", cfg, 0);
    r.handle_view(view(&[], Some("h"), true), 0);
    r.handle_committed(vec![cmd("h-1", "h", 0)], 0);
    assert_eq!(uploads(&outputs(&mut r)), vec![(1, vec!["h-1".into()])]);
    r.handle_timeout(100);
    assert_eq!(uploads(&outputs(&mut r)), vec![]);
    assert_eq!(r.poll_timeout(), Some(1_100));
    r.handle_timeout(1_100);
    assert_eq!(uploads(&outputs(&mut r)), vec![(2, vec!["h-1".into()])]);
    // Losing the hub role drops the flight; regaining it uploads again at once.
    r.handle_view(view(&[], None, false), 1_150);
    r.handle_view(view(&[], Some("h"), true), 1_160);
    assert_eq!(uploads(&outputs(&mut r)), vec![(3, vec!["h-1".into()])]);
    assert_eq!(r.stats().batches_failed, 1);
}

#[test]
fn the_hook_upstream_gossips_the_cloud_ack() {
    let cfg = Config { upstream: Upstream::Hook, ..Config::default() };
    let mut r = Replicator::new("h", cfg, 0);
    r.handle_view(view(&[("b", 1)], Some("h"), true), 0);
    r.handle_message("b", RepMsg::Replicate(vec![cmd("b-1", "b", 0)]), 1);
    outputs(&mut r);
    r.handle_stored(&ids(&["b-1"]), 2);
    let out = outputs(&mut r);
    assert!(out.contains(&Output::Upload { batch: 1, cmds: vec![cmd("b-1", "b", 0)] }), "{out:?}");
    r.handle_upload_result(9, Ok(()), 3);
    assert_eq!(outputs(&mut r), vec![]);
    r.handle_upload_result(1, Ok(()), 3);
    assert_eq!(outputs(&mut r), vec![Output::Publish(RepMsg::CloudAck(ids(&["b-1"]))), Output::CloudAcked(ids(&["b-1"]))]);
}

#[test]
fn restored_commands_are_replicated_again() {
    let mut r = Replicator::new("a", Config::default(), 0);
    r.handle_view(view(&[("b", 2), ("c", 1)], None, false), 0);
    r.handle_restored(vec![(cmd("a-1", "a", 0), false), (cmd("a-2", "a", 0), true), (cmd("x-1", "x", 0), true)], 0);
    let s = sends(&outputs(&mut r));
    assert_eq!(s, vec![("b".into(), vec!["a-1".into(), "a-2".into(), "x-1".into()]), ("c".into(), vec!["a-1".into(), "a-2".into(), "x-1".into()])]);
    assert_eq!(r.stats().below_quorum, 1);
}

/// Issue #17: a holder that was away when the CLOUD_ACK went out (QoS 1, not
/// retained) asks the hub as soon as it knows it again, not after the 60 s
/// re-offer period; the hub answers from what it knows.
#[test]
fn a_holder_back_from_an_outage_catches_up_on_cloud_acks_at_once() {
    let mut r = Replicator::new("b", Config::default(), 0);
    r.handle_view(view(&[("a", 1), ("c", 5)], Some("c"), false), 0);
    r.handle_message("a", RepMsg::Replicate(vec![cmd("a-1", "a", 0), cmd("a-2", "a", 0)]), 1);
    r.handle_stored(&ids(&["a-1", "a-2"]), 2);
    r.handle_message("c", durable(&["a-1", "a-2"]), 3);
    outputs(&mut r);
    // The broker goes away; the cloud acks while we are gone; we come back
    // and first know no hub (the election stopped with the transport).
    r.handle_view(view(&[], None, false), 10_000);
    r.handle_reconnected(20_000);
    assert_eq!(sends(&outputs(&mut r)), vec![], "nobody to ask yet");
    r.handle_view(view(&[("a", 1), ("c", 5)], Some("c"), false), 20_050);
    let out = outputs(&mut r);
    assert_eq!(sends(&out), vec![("c".into(), vec!["a-1".into(), "a-2".into()])], "offered to the hub at once: {out:?}");
    // The hub knows the cloud has them.
    let cloud = RepMsg::SyncAck(ids(&["a-1", "a-2"]).into_iter().map(|i| (i, AckState::CloudAcked)).collect());
    r.handle_message("c", cloud, 20_060);
    assert!(outputs(&mut r).contains(&Output::CloudAcked(ids(&["a-1", "a-2"]))));
    assert_eq!(r.stats().held, 0);
    // Once caught up, nothing more is offered until the re-offer period.
    r.handle_timeout(30_000);
    assert_eq!(sends(&outputs(&mut r)), vec![]);
}

// ----- tentative copies: the COPY leaves at enqueue, in parallel with the
// origin's own commit (issue #15) ---------------------------------------

fn tentative_sends(out: &[Output]) -> Vec<(String, Vec<String>)> {
    out.iter()
        .filter_map(|o| match o {
            Output::Send { to, msg: RepMsg::Tentative(cmds) } => Some((to.clone(), cmds.iter().map(|c| c.id.as_str().to_owned()).collect())),
            _ => None,
        })
        .collect()
}

fn acks(state: AckState, ids_: &[&str]) -> RepMsg {
    RepMsg::SyncAck(ids(ids_).into_iter().map(|i| (i, state)).collect())
}

fn confirm(v: &[(&str, bool)]) -> RepMsg {
    RepMsg::Confirm(v.iter().map(|(i, ok)| (CommandId::new(*i), *ok)).collect())
}

#[test]
fn copies_leave_at_commit_start_and_peer_ack_waits_for_the_local_commit() {
    let mut r = Replicator::new("a", Config::default(), 0);
    r.handle_view(view(&[("b", 500), ("c", 900)], Some("b"), false), 0);
    r.handle_committing(vec![cmd("a-1", "a", 0)], 1);
    // Sent at once, before the commit, as tentative copies (hub first).
    assert_eq!(tentative_sends(&outputs(&mut r)), vec![("b".into(), vec!["a-1".into()]), ("c".into(), vec!["a-1".into()])]);
    assert!(r.committing("a-1"));
    // Both replicas answer before the local commit: a majority of holders
    // without the origin's own copy is not a quorum yet.
    r.handle_message("b", acks(AckState::Tentative, &["a-1"]), 2);
    r.handle_message("c", acks(AckState::Tentative, &["a-1"]), 3);
    assert_eq!(outputs(&mut r), vec![]);
    assert_eq!(r.stats().below_quorum, 1);
    // The local commit: peer_ack now, and the holders get the confirmation.
    r.handle_committed(vec![cmd("a-1", "a", 0)], 4);
    let out = outputs(&mut r);
    assert!(out.contains(&Output::PeerAcked(ids(&["a-1"]))), "{out:?}");
    assert!(out.contains(&Output::Send { to: "b".into(), msg: confirm(&[("a-1", true)]) }), "{out:?}");
    assert!(out.contains(&Output::Send { to: "c".into(), msg: confirm(&[("a-1", true)]) }), "{out:?}");
    assert!(!r.committing("a-1"));
}

#[test]
fn an_ack_after_the_commit_counts_at_once_and_is_confirmed() {
    let mut r = Replicator::new("a", Config::default(), 0);
    r.handle_view(view(&[("b", 500), ("c", 900)], Some("b"), false), 0);
    r.handle_committing(vec![cmd("a-1", "a", 0)], 1);
    outputs(&mut r);
    r.handle_committed(vec![cmd("a-1", "a", 0)], 2);
    assert_eq!(outputs(&mut r), vec![]);
    r.handle_message("c", acks(AckState::Tentative, &["a-1"]), 3);
    let out = outputs(&mut r);
    assert_eq!(out, vec![Output::Send { to: "c".into(), msg: confirm(&[("a-1", true)]) }, Output::PeerAcked(ids(&["a-1"]))]);
}

#[test]
fn a_failed_commit_withdraws_its_copies_and_never_acks() {
    let mut r = Replicator::new("a", Config::default(), 0);
    r.handle_view(view(&[("b", 500), ("c", 900)], Some("b"), true), 0);
    r.handle_committing(vec![cmd("a-1", "a", 0)], 1);
    outputs(&mut r);
    r.handle_message("b", acks(AckState::Tentative, &["a-1"]), 2);
    r.handle_store_failed(&ids(&["a-1"]), 3);
    let out = outputs(&mut r);
    assert!(out.contains(&Output::Send { to: "b".into(), msg: confirm(&[("a-1", false)]) }), "{out:?}");
    assert!(out.contains(&Output::Send { to: "c".into(), msg: confirm(&[("a-1", false)]) }), "{out:?}");
    assert!(!out.iter().any(|o| matches!(o, Output::PeerAcked(_))));
    assert_eq!(r.stats().held, 0);
    // A late ack of the withdrawn copy is answered with the withdrawal again.
    r.handle_message("c", acks(AckState::Tentative, &["a-1"]), 4);
    assert_eq!(outputs(&mut r), vec![Output::Send { to: "c".into(), msg: confirm(&[("a-1", false)]) }]);
    // Even as acting hub the origin uploads nothing.
    r.handle_timeout(100_000);
    assert!(!outputs(&mut r).iter().any(|o| matches!(o, Output::Publish(RepMsg::Upload { .. }))));
}

/// A replica (here: the acting hub) holding a tentative copy.
fn hub_with_tentative() -> Replicator {
    let mut r = Replicator::new("b", Config::default(), 0);
    r.handle_view(view(&[("a", 1), ("c", 2)], Some("b"), true), 0);
    outputs(&mut r);
    r.handle_message("a", RepMsg::Tentative(vec![cmd("a-1", "a", 0)]), 1);
    assert_eq!(outputs(&mut r), vec![Output::StoreTentative(vec![cmd("a-1", "a", 0)])]);
    r.handle_stored(&ids(&["a-1"]), 2);
    assert_eq!(outputs(&mut r), vec![Output::Send { to: "a".into(), msg: acks(AckState::Tentative, &["a-1"]) }]);
    r
}

fn uploaded_ids(out: &[Output]) -> Vec<String> {
    out.iter()
        .flat_map(|o| match o {
            Output::Publish(RepMsg::Upload { cmds, .. }) => cmds.iter().map(|c| c.id.as_str().to_owned()).collect(),
            _ => Vec::new(),
        })
        .collect()
}

#[test]
fn a_tentative_copy_is_not_uploaded_or_forwarded_until_confirmed() {
    let mut r = hub_with_tentative();
    assert_eq!(r.stats().held, 0);
    assert_eq!(r.stats().tentative, 1);
    // Drain time passes: nothing uploaded; the re-ack goes to the origin.
    r.handle_timeout(31_000);
    let out = outputs(&mut r);
    assert!(uploaded_ids(&out).is_empty(), "{out:?}");
    assert_eq!(sends(&out), vec![]);
    // Only its origin may confirm it.
    r.handle_message("c", confirm(&[("a-1", true)]), 31_001);
    assert_eq!(outputs(&mut r), vec![]);
    r.handle_message("a", confirm(&[("a-1", true)]), 31_002);
    let out = outputs(&mut r);
    assert!(out.contains(&Output::Confirmed(ids(&["a-1"]))), "{out:?}");
    // Confirmed after the drain interval: uploaded at once.
    assert_eq!(uploaded_ids(&out), vec!["a-1".to_string()]);
}

#[test]
fn a_withdrawn_copy_is_deleted_and_never_uploaded() {
    let mut r = hub_with_tentative();
    // A lost withdrawal is repaired: the copy is acknowledged to its origin
    // again every ack timeout while the origin is present.
    r.handle_timeout(1_502);
    assert_eq!(outputs(&mut r), vec![Output::Send { to: "a".into(), msg: acks(AckState::Tentative, &["a-1"]) }]);
    r.handle_message("a", confirm(&[("a-1", false)]), 1_510);
    assert_eq!(outputs(&mut r), vec![Output::Withdrawn(ids(&["a-1"]))]);
    assert_eq!(r.stats().tentative, 0);
    r.handle_timeout(200_000);
    assert!(uploaded_ids(&outputs(&mut r)).is_empty());
}

#[test]
fn a_plain_copy_confirms_a_tentative_one() {
    // The origin's resend after its commit (its tentative ack was lost).
    let mut r = hub_with_tentative();
    r.handle_message("a", RepMsg::Replicate(vec![cmd("a-1", "a", 0)]), 10);
    let out = outputs(&mut r);
    assert!(out.contains(&Output::Confirmed(ids(&["a-1"]))), "{out:?}");
    assert!(out.contains(&Output::Send { to: "a".into(), msg: durable(&["a-1"]) }), "{out:?}");
    assert_eq!(r.stats().held, 1);
}

#[test]
fn a_tentative_copy_of_a_lost_origin_is_promoted_after_the_timeout() {
    let cfg = Config { promote_tentative_after_ms: 10_000, ..Config::default() };
    let mut r = Replicator::new("b", cfg, 0);
    r.handle_view(view(&[("a", 1), ("c", 2)], Some("b"), true), 0);
    r.handle_message("a", RepMsg::Tentative(vec![cmd("a-1", "a", 0)]), 1);
    r.handle_stored(&ids(&["a-1"]), 2);
    outputs(&mut r);
    // The origin leaves the view (Will / silence) and never comes back.
    r.handle_view(view(&[("c", 2)], Some("b"), true), 100);
    r.handle_timeout(5_000);
    assert!(uploaded_ids(&outputs(&mut r)).is_empty());
    assert_eq!(r.stats().tentative, 1);
    r.handle_timeout(20_000);
    let out = outputs(&mut r);
    assert!(out.contains(&Output::Confirmed(ids(&["a-1"]))), "{out:?}");
    // Now an ordinary replica whose origin is gone: re-replicated and uploaded.
    assert_eq!(sends(&out), vec![("c".into(), vec!["a-1".into()])]);
    assert_eq!(uploaded_ids(&out), vec!["a-1".to_string()]);
}

#[test]
fn an_origin_that_reloaded_confirms_from_its_storage() {
    // The replica's tentative copy survives its own reload (stored pending).
    let mut rep = Replicator::new("b", Config::default(), 0);
    rep.handle_view(view(&[("a", 1)], Some("b"), false), 0);
    rep.handle_restored(vec![(cmd("a-1", "a", 0), false), (cmd("a-2", "a", 0), false)], 0);
    rep.handle_timeout(1);
    let out = outputs(&mut rep);
    assert!(out.contains(&Output::Send { to: "a".into(), msg: acks(AckState::Tentative, &["a-1", "a-2"]) }), "{out:?}");
    // The origin reloaded: a-1 is in its IndexedDB, a-2 never committed.
    let mut origin = Replicator::new("a", Config::default(), 0);
    origin.handle_view(view(&[("b", 1)], Some("b"), false), 0);
    origin.handle_restored(vec![(cmd("a-1", "a", 0), false)], 0);
    outputs(&mut origin);
    origin.handle_message("b", acks(AckState::Tentative, &["a-1", "a-2"]), 2);
    let out = outputs(&mut origin);
    let verdict = out.iter().find_map(|o| match o {
        Output::Send { to, msg: m @ RepMsg::Confirm(_) } if to == "b" => Some(m.clone()),
        _ => None,
    });
    assert_eq!(verdict, Some(confirm(&[("a-1", true), ("a-2", false)])));
    rep.handle_message("a", verdict.unwrap(), 3);
    let out = outputs(&mut rep);
    assert!(out.contains(&Output::Confirmed(ids(&["a-1"]))), "{out:?}");
    assert!(out.contains(&Output::Withdrawn(ids(&["a-2"]))), "{out:?}");
}

/// A device made holder of a large backlog (a fresh page joining while the
/// writer holds hundreds of commands) gets it in messages that each stay
/// within [`WS_MESSAGE_BYTES`] inside the largest envelope — Mosquitto 2.0
/// writes anything larger to a WebSocket page ~4 KB per turn of its event
/// loop, and heartbeats queued behind it wait (`docs/replication.md`). A
/// single larger command still goes, alone. The holder's acks of that
/// backlog stay within the limit too. Failed with the old 192 KiB /
/// 1,000-id defaults (one ~180 KB `REPLICATE`, one ~19 KB `SYNC_ACK`).
#[test]
fn replication_messages_of_a_backlog_stay_within_the_websocket_limit() {
    let envelope = crate::envelope::Limits { max_body: 0 }.max_envelope();
    let sized = |i: usize, len: usize| Rc::new(Cmd { payload: vec![i as u8; len], ..(*cmd(&format!("a-{i:04}-{}", "x".repeat(24)), "a", i as u64)).clone() });
    let mut backlog: Vec<Rc<Cmd>> = (0..500).map(|i| sized(i, 100 + (i * 37) % 400)).collect();
    backlog.insert(250, sized(9_999, 10_000));
    let mut r = Replicator::new("a", Config::default(), 0);
    r.handle_view(view(&[("b", 500)], Some("b"), false), 0);
    r.handle_committed(backlog.clone(), 10);
    let (mut carried, mut messages) = (Vec::new(), 0);
    for o in outputs(&mut r) {
        if let Output::Send { msg: m @ (RepMsg::Replicate(_) | RepMsg::Tentative(_)), .. } = &o {
            let (RepMsg::Replicate(cmds) | RepMsg::Tentative(cmds)) = m else { unreachable!() };
            let len = m.encode().unwrap().len();
            messages += 1;
            carried.extend(cmds.iter().map(|c| c.id.clone()));
            if cmds.iter().any(|c| c.payload.len() == 10_000) {
                assert_eq!(cmds.len(), 1, "the large command goes alone");
            } else {
                assert!(len + envelope <= WS_MESSAGE_BYTES, "{len} body bytes + {envelope} > {WS_MESSAGE_BYTES}");
            }
        }
    }
    assert_eq!(carried, backlog.iter().map(|c| c.id.clone()).collect::<Vec<_>>(), "every command once, in order");
    assert!(messages > 40, "{messages} messages");

    // The holder stores the backlog and acks it.
    let mut b = Replicator::new("b", Config::default(), 0);
    b.handle_view(view(&[("a", 1)], Some("b"), false), 0);
    b.handle_message("a", RepMsg::Replicate(backlog.clone()), 1);
    outputs(&mut b);
    b.handle_stored(&backlog.iter().map(|c| c.id.clone()).collect::<Vec<_>>(), 2);
    let mut acked = 0;
    for o in outputs(&mut b) {
        if let Output::Send { msg: m @ RepMsg::SyncAck(a), .. } = &o {
            acked += a.len();
            let len = m.encode().unwrap().len();
            assert!(len + envelope <= WS_MESSAGE_BYTES, "ack: {len} body bytes + {envelope} > {WS_MESSAGE_BYTES}");
        }
    }
    assert_eq!(acked, backlog.len());
}
