//! Enqueue, group commit, commit failures, the Safari reopen rule, quota, misuse.

use super::*;

#[test]
fn single_enqueue_is_written_at_once_and_visible_only_after_commit() {
    let mut q = loaded(Config::new("d"));
    let t = q.enqueue("transaction", b"x".to_vec(), T0).unwrap();
    assert_eq!(t.id().as_str(), "d-0000000000000007-1");
    let op = one_op(&mut q);
    assert_eq!(put_ids(&op), vec![t.id().clone()]);
    assert_eq!(op.store(), Some(STORE_OUTBOX));
    assert_eq!(op.durability(), Durability::Strict);
    assert_eq!(q.pending_count(), 0, "not visible before commit");
    assert!(q.get(t.id().as_str()).is_none());
    assert_eq!(q.unwritten_len(), 1);
    done(&mut q, &op);
    match &events(&mut q)[..] {
        [Event::Enqueued { tickets, records }] => {
            assert_eq!(tickets, &vec![t.clone()]);
            assert_eq!(records[0].payload, b"x");
            assert_eq!(records[0].status, Status::Pending);
        }
        ev => panic!("{ev:?}"),
    }
    assert_eq!(q.pending_count(), 1);
    assert_eq!(q.unwritten_len(), 0);
    assert!(q.is_storage_idle());
}

#[test]
fn group_commit_collects_enqueues_made_while_a_write_is_in_flight() {
    let mut q = loaded(Config::new("d"));
    let first = q.enqueue("a", vec![1], T0).unwrap();
    let op1 = one_op(&mut q);
    let later: Vec<Ticket> = (0..25)
        .map(|i| q.enqueue("a", vec![i], T0).unwrap())
        .collect();
    assert!(
        ops(&mut q).is_empty(),
        "nothing more while one write is in flight"
    );
    done(&mut q, &op1);
    let op2 = one_op(&mut q);
    assert_eq!(
        put_ids(&op2),
        later.iter().map(|t| t.id().clone()).collect::<Vec<_>>()
    );
    done(&mut q, &op2);
    assert!(ops(&mut q).is_empty());
    let mut resolved = Vec::new();
    for ev in events(&mut q) {
        match ev {
            Event::Enqueued { tickets, .. } => resolved.extend(tickets),
            ev => panic!("unexpected {ev:?}"),
        }
    }
    let mut expected = vec![first];
    expected.extend(later);
    assert_eq!(
        resolved, expected,
        "each ticket resolved exactly once, in order"
    );
    assert_eq!(q.pending_count(), 26);
}

#[test]
fn batches_respect_record_and_byte_limits() {
    let mut cfg = Config::new("d");
    cfg.max_batch_records = 3;
    let mut q = loaded(cfg);
    q.enqueue("a", vec![], T0).unwrap();
    let op = one_op(&mut q);
    for _ in 0..7 {
        q.enqueue("a", vec![], T0).unwrap();
    }
    done(&mut q, &op);
    let mut sizes = Vec::new();
    while let Some(op) = q.poll_storage_op() {
        sizes.push(put_ids(&op).len());
        assert!(q.poll_storage_op().is_none(), "one put in flight at a time");
        done(&mut q, &op);
    }
    assert_eq!(sizes, vec![3, 3, 1]);

    let mut cfg = Config::new("d");
    cfg.max_batch_bytes = 1_000;
    cfg.max_payload_bytes = 600;
    let mut q = loaded(cfg);
    q.enqueue("a", vec![0; 10], T0).unwrap();
    let op = one_op(&mut q);
    for _ in 0..3 {
        q.enqueue("a", vec![0; 600], T0).unwrap(); // ≈700 bytes each with overhead
    }
    done(&mut q, &op);
    let mut sizes = Vec::new();
    while let Some(op) = q.poll_storage_op() {
        sizes.push(put_ids(&op).len());
        done(&mut q, &op);
    }
    assert_eq!(sizes, vec![1, 1, 1]);
}

#[test]
fn failed_commit_rejects_every_ticket_and_leaves_nothing() {
    let mut q = loaded(Config::new("d"));
    let a = q.enqueue("a", vec![1], T0).unwrap();
    let op1 = one_op(&mut q);
    let b = q
        .enqueue_with(
            NewCommand {
                id: Some("u-1".into()),
                topic: "a".into(),
                ..Default::default()
            },
            T0,
        )
        .unwrap();
    let c = q.enqueue("a", vec![3], T0).unwrap();
    done(&mut q, &op1);
    let op2 = one_op(&mut q);
    q.handle_storage_done(op2.op(), Err(other()), T0).unwrap();
    let ev = events(&mut q);
    assert_eq!(ev.len(), 2);
    assert!(matches!(&ev[0], Event::Enqueued { tickets, .. } if tickets == &vec![a.clone()]));
    match &ev[1] {
        Event::EnqueueFailed { tickets, error } => {
            assert_eq!(tickets, &vec![b.clone(), c.clone()]);
            assert!(matches!(error, QueueError::Storage(e) if e.kind == StorageErrorKind::Other));
        }
        ev => panic!("{ev:?}"),
    }
    assert_eq!(q.len(), 1);
    assert!(q.get("u-1").is_none() && q.get(c.id().as_str()).is_none());
    assert_eq!(q.queued_len(), 1);
    assert!(
        ops(&mut q).is_empty(),
        "no compensation needed for a definite failure"
    );
    // The id is free again.
    q.enqueue_with(
        NewCommand {
            id: Some("u-1".into()),
            topic: "a".into(),
            ..Default::default()
        },
        T0,
    )
    .unwrap();
}

#[test]
fn connection_lost_reopens_and_retries_the_same_batch_once() {
    let mut q = loaded(Config::new("d"));
    let t = q.enqueue("a", vec![9], T0).unwrap();
    let op1 = one_op(&mut q);
    q.handle_storage_done(op1.op(), Err(lost()), T0).unwrap();
    assert!(events(&mut q).is_empty(), "not rejected yet");
    let reopen = one_op(&mut q);
    assert!(
        matches!(reopen, StorageOp::ReopenDatabase { .. }),
        "{reopen:?}"
    );
    // Enqueues during the reopen wait.
    let t2 = q.enqueue("a", vec![10], T0).unwrap();
    assert!(ops(&mut q).is_empty());
    done(&mut q, &reopen);
    let op2 = one_op(&mut q);
    assert_ne!(op2.op(), op1.op());
    match (&op1, &op2) {
        (StorageOp::PutRecords { records: r1, .. }, StorageOp::PutRecords { records: r2, .. }) => {
            assert_eq!(r1, r2, "identical records, identical ids")
        }
        _ => panic!(),
    }
    // A late report for the first attempt is refused harmlessly.
    assert!(q.handle_storage_done(op1.op(), Ok(()), T0).is_err());
    done(&mut q, &op2);
    let op3 = one_op(&mut q);
    assert_eq!(put_ids(&op3), vec![t2.id().clone()]);
    done(&mut q, &op3);
    let ev = events(&mut q);
    assert_eq!(
        ev.iter()
            .filter(|e| matches!(e, Event::Enqueued { tickets, .. } if tickets.contains(&t)))
            .count(),
        1
    );
    assert!(!ev.iter().any(|e| matches!(e, Event::EnqueueFailed { .. })));
    assert_eq!(q.pending_count(), 2);
}

#[test]
fn second_connection_loss_rejects_and_compensates() {
    let mut q = loaded(Config::new("d"));
    let t = q
        .enqueue_with(
            NewCommand {
                id: Some("x".into()),
                topic: "a".into(),
                ..Default::default()
            },
            T0,
        )
        .unwrap();
    let op1 = one_op(&mut q);
    q.handle_storage_done(op1.op(), Err(lost()), T0).unwrap();
    let reopen = one_op(&mut q);
    done(&mut q, &reopen);
    let op2 = one_op(&mut q);
    q.handle_storage_done(op2.op(), Err(lost()), T0).unwrap();
    match &events(&mut q)[..] {
        [Event::EnqueueFailed { tickets, error }] => {
            assert_eq!(tickets, &vec![t]);
            assert_eq!(error.code(), "STORAGE_CONNECTION_LOST");
        }
        ev => panic!("{ev:?}"),
    }
    assert!(q.is_empty());
    // The write may have landed before the connection died: it is deleted, no second reopen.
    let del = one_op(&mut q);
    assert!(
        matches!(&del, StorageOp::DeleteRecords { ids, .. } if ids == &vec![CommandId::new("x")]),
        "{del:?}"
    );
    let reuse = NewCommand {
        id: Some("x".into()),
        topic: "a".into(),
        ..Default::default()
    };
    assert!(matches!(
        q.enqueue_with(reuse.clone(), T0),
        Err(QueueError::Misuse(Misuse::DuplicateId(_)))
    ));
    // A failed compensation is tried again after a pause; the id stays reserved meanwhile.
    q.handle_storage_done(del.op(), Err(other()), T0).unwrap();
    assert!(ops(&mut q).is_empty());
    assert!(q.enqueue_with(reuse.clone(), T0).is_err());
    assert_eq!(q.poll_timeout(), Some(T0 + 5_000));
    q.handle_timeout(T0 + 5_000);
    let del = one_op(&mut q);
    assert!(
        matches!(&del, StorageOp::DeleteRecords { ids, .. } if ids == &vec![CommandId::new("x")])
    );
    done(&mut q, &del);
    q.enqueue_with(reuse, T0).unwrap();
}

#[test]
fn failed_reopen_rejects_what_waited_for_it() {
    let mut q = loaded(Config::new("d"));
    let t = q.enqueue("a", vec![], T0).unwrap();
    let op1 = one_op(&mut q);
    q.handle_storage_done(op1.op(), Err(lost()), T0).unwrap();
    let reopen = one_op(&mut q);
    q.handle_storage_done(reopen.op(), Err(other()), T0)
        .unwrap();
    assert!(
        matches!(&events(&mut q)[..], [Event::EnqueueFailed { tickets, .. }] if tickets == &vec![t])
    );
    assert!(matches!(one_op(&mut q), StorageOp::DeleteRecords { .. }));
}

#[test]
fn one_reopen_for_several_ops_lost_together() {
    let mut q = loaded(Config::new("d"));
    let id = committed(&mut q, "a");
    q.peer_acked(from_ref(&id), T0);
    q.enqueue("a", vec![], T0).unwrap();
    let both = ops(&mut q);
    assert_eq!(
        both.len(),
        2,
        "a put and an update may be in flight together: {both:?}"
    );
    for op in &both {
        q.handle_storage_done(op.op(), Err(lost()), T0).unwrap();
    }
    let reopen = one_op(&mut q);
    assert!(matches!(reopen, StorageOp::ReopenDatabase { .. }));
    done(&mut q, &reopen);
    let retried = ops(&mut q);
    assert_eq!(retried.len(), 2);
    for op in &retried {
        done(&mut q, op);
    }
    assert_eq!(
        q.count_by_status(),
        StatusCounts {
            pending: 1,
            peer_ack: 1,
            ..Default::default()
        }
    );
}

#[test]
fn quota_exceeded_is_a_typed_queue_full() {
    let mut q = loaded(Config::new("d"));
    let a = committed(&mut q, "a");
    let t = q.enqueue("a", vec![0; 100], T0).unwrap();
    let op = one_op(&mut q);
    q.handle_storage_done(op.op(), Err(quota()), T0).unwrap();
    match &events(&mut q)[..] {
        [Event::EnqueueFailed { tickets, error }] => {
            assert_eq!(tickets, &vec![t]);
            assert_eq!(error, &QueueError::QueueFull(FullCause::StorageQuota));
            assert_eq!(error.code(), "QUOTA_EXCEEDED");
        }
        ev => panic!("{ev:?}"),
    }
    assert!(ops(&mut q).is_empty(), "no reopen, no retry for quota");
    assert_eq!(q.len(), 1);
    assert_eq!(q.status(a.as_str()), Some(Status::Pending));
    committed(&mut q, "a"); // still usable once space is back
    assert_eq!(q.pending_count(), 2);
}

#[test]
fn record_limit_refuses_before_storage() {
    let mut cfg = Config::new("d");
    cfg.max_queued = 2;
    let mut q = loaded(cfg);
    let a = committed(&mut q, "a");
    q.enqueue("a", vec![], T0).unwrap();
    assert_eq!(
        q.enqueue("a", vec![], T0).unwrap_err(),
        QueueError::QueueFull(FullCause::RecordLimit { limit: 2 })
    );
    q.cloud_acked(&[a], T0);
    for op in ops(&mut q) {
        done(&mut q, &op);
    }
    q.enqueue("a", vec![], T0).unwrap();
}

#[test]
fn misuse_is_reported_not_panicked() {
    let mut q = Outbox::new(Config::new("d"), 1);
    assert_eq!(
        q.enqueue("a", vec![], T0).unwrap_err(),
        Misuse::NotLoaded.into()
    );
    assert_eq!(
        q.inbox_mut().mark_processed("m", T0).unwrap_err(),
        Misuse::NotLoaded.into()
    );
    q.handle_loaded(Vec::new(), T0);
    assert_eq!(
        q.enqueue("", vec![], T0).unwrap_err(),
        Misuse::EmptyTopic.into()
    );
    assert!(matches!(
        q.enqueue(&"t".repeat(300), vec![], T0),
        Err(QueueError::Misuse(Misuse::TopicTooLong { .. }))
    ));
    assert!(matches!(
        q.enqueue("a", vec![0; 300 << 10], T0),
        Err(QueueError::Misuse(Misuse::PayloadTooLarge { .. }))
    ));
    let bad = NewCommand {
        id: Some("".into()),
        topic: "a".into(),
        ..Default::default()
    };
    assert_eq!(
        q.enqueue_with(bad, T0).unwrap_err(),
        Misuse::InvalidId.into()
    );
    let dup = NewCommand {
        id: Some("k".into()),
        topic: "a".into(),
        ..Default::default()
    };
    q.enqueue_with(dup.clone(), T0).unwrap();
    assert!(matches!(
        q.enqueue_with(dup, T0),
        Err(QueueError::Misuse(Misuse::DuplicateId(_)))
    ));
    let unknown = CommandId::new("nope");
    let out = q.peer_acked(from_ref(&unknown), T0);
    assert_eq!(
        out.rejected,
        vec![(
            unknown.clone(),
            Misuse::UnknownCommand(unknown.clone()).into()
        )]
    );
    // "k" is being written, not committed: not yet known to transitions.
    assert_eq!(q.cloud_acked(&[CommandId::new("k")], T0).rejected.len(), 1);
    assert!(q.retry(&unknown, T0).unwrap_err().is_misuse());
    assert!(q.handle_storage_done(OpId(999), Ok(()), T0).is_err());
    assert!(q.handle_records_read(OpId(999), Ok(vec![]), T0).is_err());
}

#[test]
fn replicas_are_written_like_commands_and_never_twice() {
    let mut q = loaded(Config::new("b"));
    let mut r = record("a-1", Status::PeerAck, 0, T0);
    r.origin = Some("device-a".into());
    let t = q.accept_replica(r.clone()).expect("accepted").expect("a write");
    // Being written: a second copy is refused (the replicator waits for the first).
    assert!(matches!(q.accept_replica(r.clone()), Err(QueueError::Misuse(Misuse::DuplicateId(_)))));
    let op = one_op(&mut q);
    assert_eq!(put_ids(&op), vec![CommandId::new("a-1")]);
    done(&mut q, &op);
    match &events(&mut q)[..] {
        [Event::Enqueued { tickets, records }] => {
            assert_eq!(tickets, &vec![t]);
            assert_eq!(records[0].origin.as_deref(), Some("device-a"));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(q.status("a-1"), Some(Status::PeerAck));
    // Committed: nothing to write again.
    assert_eq!(q.accept_replica(r).unwrap(), None);
    assert!(ops(&mut q).is_empty());
}
