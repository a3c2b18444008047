//! Status transitions, retries, reload, purge, reading records back.

use super::*;

#[test]
fn status_lifecycle_is_persisted_before_it_is_visible() {
    let mut q = loaded(Config::new("d"));
    let id = committed(&mut q, "a");
    let out = q.peer_acked(from_ref(&id), T0 + 5);
    assert_eq!((out.accepted, out.unchanged, out.rejected.len()), (1, 0, 0));
    assert_eq!(
        q.status(id.as_str()),
        Some(Status::Pending),
        "not visible before the write"
    );
    let op = one_op(&mut q);
    match &op {
        StorageOp::UpdateStatus { updates, .. } => assert_eq!(
            updates,
            &vec![StatusUpdate {
                id: id.clone(),
                status: Status::PeerAck,
                retry_count: 0,
                updated_at: T0 + 5,
                last_error: None
            }]
        ),
        op => panic!("{op:?}"),
    }
    // Duplicate ack while the write is in flight: nothing to do.
    assert_eq!(q.peer_acked(from_ref(&id), T0).unchanged, 1);
    done(&mut q, &op);
    assert_eq!(
        events(&mut q),
        vec![Event::StatusChanged {
            id: id.clone(),
            from: Status::Pending,
            to: Status::PeerAck
        }]
    );
    assert_eq!(
        q.count_by_status(),
        StatusCounts {
            peer_ack: 1,
            ..Default::default()
        }
    );
    q.cloud_acked(from_ref(&id), T0 + 6);
    let op = one_op(&mut q);
    done(&mut q, &op);
    assert_eq!(
        events(&mut q),
        vec![Event::StatusChanged {
            id: id.clone(),
            from: Status::PeerAck,
            to: Status::CloudAck
        }]
    );
    // Going backwards or failing after the cloud has it is refused; a late peer ack is a no-op.
    assert_eq!(q.peer_acked(from_ref(&id), T0).unchanged, 1);
    let out = q.upload_failed(from_ref(&id), "500", T0);
    assert!(matches!(
        &out.rejected[..],
        [(
            _,
            QueueError::Misuse(Misuse::InvalidTransition {
                from: Status::CloudAck,
                action: "upload_failed",
                ..
            })
        )]
    ));
    assert!(matches!(
        q.retry(&id, T0),
        Err(QueueError::Misuse(Misuse::InvalidTransition { .. }))
    ));
    assert!(ops(&mut q).is_empty());
}

#[test]
fn changes_made_in_one_turn_are_written_once() {
    let mut q = loaded(Config::new("d"));
    let id = committed(&mut q, "a");
    q.peer_acked(from_ref(&id), T0 + 1);
    q.cloud_acked(from_ref(&id), T0 + 2);
    let op = one_op(&mut q);
    match &op {
        StorageOp::UpdateStatus { updates, .. } => {
            assert_eq!(updates.len(), 1);
            assert_eq!(updates[0].status, Status::CloudAck);
        }
        op => panic!("{op:?}"),
    }
    done(&mut q, &op);
    assert_eq!(
        events(&mut q),
        vec![Event::StatusChanged {
            id,
            from: Status::Pending,
            to: Status::CloudAck
        }]
    );
}

#[test]
fn changes_made_during_an_update_go_into_the_next_one() {
    let mut q = loaded(Config::new("d"));
    let (a, b) = (committed(&mut q, "a"), committed(&mut q, "a"));
    q.peer_acked(from_ref(&a), T0);
    let op1 = one_op(&mut q);
    q.cloud_acked(&[a.clone(), b.clone()], T0);
    assert!(ops(&mut q).is_empty(), "one update in flight at a time");
    done(&mut q, &op1);
    let op2 = one_op(&mut q);
    assert!(matches!(&op2, StorageOp::UpdateStatus { updates, .. } if updates.len() == 2));
    done(&mut q, &op2);
    assert_eq!(q.count_by_status().cloud_ack, 2);
}

#[test]
fn a_failed_status_write_reverts_to_the_committed_state() {
    let mut q = loaded(Config::new("d"));
    let id = committed(&mut q, "a");
    q.peer_acked(from_ref(&id), T0);
    let op = one_op(&mut q);
    q.handle_storage_done(op.op(), Err(other()), T0).unwrap();
    assert!(
        matches!(&events(&mut q)[..], [Event::StatusUpdateFailed { ids, .. }] if ids == &vec![id.clone()])
    );
    assert_eq!(q.status(id.as_str()), Some(Status::Pending));
    // The ack can be applied again (it was reverted, not remembered as done).
    assert_eq!(q.peer_acked(from_ref(&id), T0).accepted, 1);
    let op = one_op(&mut q);
    done(&mut q, &op);
    assert_eq!(q.status(id.as_str()), Some(Status::PeerAck));
}

#[test]
fn retries_lead_to_failed_then_manual_retry_resets() {
    let mut q = loaded(Config::new("d"));
    let id = committed(&mut q, "a");
    let mut t = T0;
    for n in 1..=3u32 {
        t += 10;
        assert_eq!(q.upload_failed(from_ref(&id), "HTTP 503", t).accepted, 1);
        let op = one_op(&mut q);
        done(&mut q, &op);
        let info = q.get(id.as_str()).unwrap().clone();
        assert_eq!(info.retry_count, n);
        assert_eq!(info.last_error.as_deref(), Some("HTTP 503"));
        if n < 3 {
            assert_eq!(info.status, Status::Pending);
            // Backoff 1 s, 2 s: woken when it is over.
            let due = t + (1_000u64 << (n - 1));
            assert_eq!(q.poll_timeout(), Some(due));
            q.handle_timeout(due - 1);
            assert!(!events(&mut q)
                .iter()
                .any(|e| matches!(e, Event::RetryDue { .. })));
            q.handle_timeout(due);
            assert!(events(&mut q).contains(&Event::RetryDue {
                ids: vec![id.clone()]
            }));
        }
    }
    assert_eq!(q.status(id.as_str()), Some(Status::Failed));
    assert_eq!(
        events(&mut q),
        vec![Event::StatusChanged {
            id: id.clone(),
            from: Status::Pending,
            to: Status::Failed
        }]
    );
    assert_eq!(q.count_by_status().failed, 1);
    assert!(!q
        .upload_failed(from_ref(&id), "again", t)
        .rejected
        .is_empty());
    // A replica's ack racing the final upload failure is normal: no change.
    assert_eq!(q.peer_acked(from_ref(&id), t).unchanged, 1);
    assert_eq!(q.status(id.as_str()), Some(Status::Failed));
    q.retry(&id, t + 1).unwrap();
    let op = one_op(&mut q);
    done(&mut q, &op);
    let info = q.get(id.as_str()).unwrap();
    assert_eq!((info.status, info.retry_count), (Status::Pending, 0));
    assert_eq!(q.pending_count(), 1);
}

#[test]
fn max_retries_is_configurable() {
    let mut cfg = Config::new("d");
    cfg.max_retries = 1;
    let mut q = loaded(cfg);
    let id = committed(&mut q, "a");
    q.upload_failed(from_ref(&id), "e", T0);
    let op = one_op(&mut q);
    done(&mut q, &op);
    assert_eq!(q.status(id.as_str()), Some(Status::Failed));
}

#[test]
fn reload_restores_counts_order_and_ages() {
    let recs = vec![
        record("c", Status::Pending, 0, T0 + 30),
        record("a", Status::Pending, 1, T0 + 10),
        record("b", Status::PeerAck, 0, T0 + 20),
        record("d", Status::CloudAck, 0, T0 + 40),
        record("e", Status::Failed, 3, T0 + 5),
        record("", Status::Pending, 0, T0), // ignored
    ];
    let mut q = Outbox::new(Config::new("d"), 2);
    q.handle_loaded(recs, T0 + 100);
    assert_eq!(
        q.count_by_status(),
        StatusCounts {
            pending: 2,
            peer_ack: 1,
            cloud_ack: 1,
            failed: 1
        }
    );
    assert_eq!(q.pending_count(), 2);
    assert_eq!(
        q.list(Status::Pending),
        vec![&CommandId::new("a"), &CommandId::new("c")]
    );
    assert_eq!(q.oldest_pending_age(T0 + 100), Some(90));
    assert_eq!(q.oldest_age(Status::Failed, T0 + 100), Some(95));
    assert_eq!(q.oldest_pending_age(0), Some(0), "clock behind: saturates");
    assert_eq!(q.queued_len(), 4);
    // "a" failed once: it is due again 1 s after its updated_at.
    q.handle_timeout(T0 + 100);
    assert!(events(&mut q).is_empty());
    assert_eq!(q.poll_timeout(), Some(T0 + 1_010));
    q.handle_timeout(T0 + 1_010);
    assert_eq!(
        events(&mut q),
        vec![Event::RetryDue {
            ids: vec![CommandId::new("a")]
        }]
    );
    // Loaded commands take transitions like any other.
    q.peer_acked(&[CommandId::new("c")], T0 + 101);
    let op = one_op(&mut q);
    done(&mut q, &op);
    assert_eq!(q.count_by_status().peer_ack, 2);
}

#[test]
fn old_cloud_acked_commands_are_purged() {
    let mut cfg = Config::new("d");
    cfg.keep_cloud_acked_ms = Some(1_000);
    cfg.maintenance_interval_ms = 500;
    let mut q = Outbox::new(cfg, 1);
    q.handle_loaded(
        vec![
            record("old", Status::CloudAck, 0, T0),
            record("p", Status::Pending, 0, T0),
        ],
        T0 + 2_000,
    );
    let op = one_op(&mut q);
    assert!(
        matches!(&op, StorageOp::DeleteRecords { ids, .. } if ids == &vec![CommandId::new("old")])
    );
    done(&mut q, &op);
    assert_eq!(
        events(&mut q),
        vec![Event::Purged {
            ids: vec![CommandId::new("old")]
        }]
    );
    assert_eq!(q.len(), 1);
    // A fresh cloud ack is kept until it is old enough.
    q.cloud_acked(&[CommandId::new("p")], T0 + 2_000);
    let op = one_op(&mut q);
    done(&mut q, &op);
    assert_eq!(q.poll_timeout(), Some(T0 + 2_500));
    q.handle_timeout(T0 + 2_500);
    assert!(ops(&mut q).is_empty());
    q.handle_timeout(T0 + 3_000);
    assert!(
        matches!(&one_op(&mut q), StorageOp::DeleteRecords { ids, .. } if ids == &vec![CommandId::new("p")])
    );
}

#[test]
fn records_are_read_back_for_upload() {
    let mut q = loaded(Config::new("d"));
    let (a, b) = (CommandId::new("a"), CommandId::new("b"));
    let req = q.read_records(vec![a.clone(), b.clone(), a.clone()]);
    let op = one_op(&mut q);
    assert!(
        matches!(&op, StorageOp::ReadRecords { ids, .. } if ids == &vec![a.clone(), b.clone()])
    );
    assert_eq!(op.op(), req);
    // Lost connection: reopen, ask again under a new op id, answer under the request id.
    q.handle_records_read(op.op(), Err(lost()), T0).unwrap();
    let reopen = one_op(&mut q);
    done(&mut q, &reopen);
    let op2 = one_op(&mut q);
    assert_ne!(op2.op(), req);
    let extra = record("zzz", Status::Pending, 0, T0);
    q.handle_records_read(
        op2.op(),
        Ok(vec![extra, record("a", Status::Pending, 0, T0)]),
        T0,
    )
    .unwrap();
    match &events(&mut q)[..] {
        [Event::RecordsRead {
            op,
            records,
            missing,
        }] => {
            assert_eq!(*op, req);
            assert_eq!(records.len(), 1);
            assert_eq!(records[0].id, a);
            assert_eq!(missing, &vec![b.clone()]);
        }
        ev => panic!("{ev:?}"),
    }
    let req = q.read_records(vec![b.clone()]);
    let op = one_op(&mut q);
    q.handle_storage_done(op.op(), Err(other()), T0).unwrap();
    assert!(matches!(&events(&mut q)[..], [Event::ReadFailed { op, .. }] if *op == req));
    let req = q.read_records(Vec::new());
    assert!(ops(&mut q).is_empty());
    assert!(matches!(&events(&mut q)[..], [Event::RecordsRead { op, .. }] if *op == req));
}
