//! The inbox, error classification, configuration.

use super::*;

#[test]
fn inbox_dedups_within_a_session_and_across_reload() {
    let mut q = loaded(Config::new("d"));
    assert!(q.inbox_mut().mark_processed("m1", T0).unwrap());
    assert!(
        !q.inbox_mut().mark_processed("m1", T0).unwrap(),
        "second delivery dropped"
    );
    assert!(q.inbox().is_processed("m1"));
    let op = one_op(&mut q);
    let entries = match &op {
        StorageOp::PutInbox { entries, .. } => entries.clone(),
        op => panic!("{op:?}"),
    };
    assert_eq!(op.store(), Some(STORE_INBOX));
    assert_eq!(op.durability(), Durability::Relaxed);
    assert_eq!(
        entries,
        vec![InboxEntry {
            id: "m1".into(),
            processed_at: T0
        }]
    );
    done(&mut q, &op);
    assert_eq!(
        events(&mut q),
        vec![Event::InboxPersisted {
            ids: vec!["m1".into()]
        }]
    );

    // Reload: a new core with what the store holds.
    let mut q = Outbox::new(Config::new("d"), 8);
    q.handle_loaded(Vec::new(), T0 + 1);
    assert!(!q.inbox().is_processed("m1"), "not loaded yet");
    q.inbox_mut().handle_loaded(entries, T0 + 1);
    assert!(q.inbox().is_processed("m1"));
    assert!(!q.inbox_mut().mark_processed("m1", T0 + 1).unwrap());
    assert!(ops(&mut q).is_empty());
    assert!(q.inbox_mut().mark_processed("", T0).is_err());
    assert!(q
        .inbox_mut()
        .mark_processed(&"x".repeat(MAX_INBOX_ID_LEN + 1), T0)
        .is_err());
}

#[test]
fn inbox_is_bounded_by_count_and_age() {
    let mut cfg = Config::new("d");
    cfg.inbox = InboxConfig {
        max_age_ms: 10_000,
        max_entries: 10,
        prune_slack: 2,
    };
    let mut q = loaded(cfg);
    for i in 0..13u64 {
        assert!(q
            .inbox_mut()
            .mark_processed(&format!("m{i:02}"), T0 + i)
            .unwrap());
        assert!(
            q.inbox().len() <= 12,
            "never above max_entries + prune_slack"
        );
    }
    assert_eq!(q.inbox().len(), 10);
    assert!(!q.inbox().is_processed("m02") && q.inbox().is_processed("m03"));
    let all = ops(&mut q);
    // The pruned ones never reached storage: nothing to put for them, deletes are harmless.
    match &all[..] {
        [StorageOp::PutInbox { entries, .. }] => assert_eq!(entries.len(), 10),
        ops => panic!("{ops:?}"),
    }
    done(&mut q, &all[0]);
    let del = one_op(&mut q);
    assert!(
        matches!(&del, StorageOp::DeleteInbox { ids, .. } if ids == &vec!["m00".to_string(), "m01".into(), "m02".into()])
    );
    done(&mut q, &del);

    // Age: loaded marks older than max_age are dropped at load; others at maintenance.
    let mut cfg = Config::new("d");
    cfg.inbox = InboxConfig {
        max_age_ms: 10_000,
        max_entries: 100,
        prune_slack: 10,
    };
    cfg.maintenance_interval_ms = 5_000;
    let mut q = Outbox::new(cfg, 3);
    q.handle_loaded(Vec::new(), T0);
    let entries = vec![
        InboxEntry {
            id: "old".into(),
            processed_at: T0 - 20_000,
        },
        InboxEntry {
            id: "mid".into(),
            processed_at: T0 - 6_000,
        },
        InboxEntry {
            id: "new".into(),
            processed_at: T0,
        },
    ];
    q.inbox_mut().handle_loaded(entries, T0);
    assert!(!q.inbox().is_processed("old") && q.inbox().is_processed("mid"));
    let del = one_op(&mut q);
    assert!(matches!(&del, StorageOp::DeleteInbox { ids, .. } if ids == &vec!["old".to_string()]));
    done(&mut q, &del);
    q.handle_timeout(T0 + 5_000);
    assert!(!q.inbox().is_processed("mid") && q.inbox().is_processed("new"));
    assert!(
        matches!(&one_op(&mut q), StorageOp::DeleteInbox { ids, .. } if ids == &vec!["mid".to_string()])
    );
}

#[test]
fn failed_inbox_write_is_retried_after_backoff() {
    let mut q = loaded(Config::new("d"));
    q.inbox_mut().mark_processed("m", T0).unwrap();
    let op = one_op(&mut q);
    q.handle_storage_done(op.op(), Err(other()), T0).unwrap();
    let retry_at = match &events(&mut q)[..] {
        [Event::InboxWriteFailed {
            count: 1, retry_at, ..
        }] => *retry_at,
        ev => panic!("{ev:?}"),
    };
    assert!(q.inbox().is_processed("m"), "still deduplicated in memory");
    assert_eq!(q.inbox().unsaved_len(), 1);
    q.inbox_mut().mark_processed("n", T0).unwrap();
    assert!(ops(&mut q).is_empty(), "waits for the backoff");
    assert_eq!(q.poll_timeout(), Some(retry_at));
    q.handle_timeout(retry_at);
    match &one_op(&mut q) {
        StorageOp::PutInbox { entries, .. } => assert_eq!(entries.len(), 2),
        op => panic!("{op:?}"),
    }
}

#[test]
fn storage_errors_are_classified_from_dom_exceptions() {
    let k = |n: &str, m: &str| StorageError::classify(n, m).kind;
    assert_eq!(
        k(
            "UnknownError",
            "Connection to Indexed Database server lost. Refresh the page to try again"
        ),
        StorageErrorKind::ConnectionLost
    );
    assert_eq!(
        k("InvalidStateError", "The database connection is closing."),
        StorageErrorKind::ConnectionLost
    );
    assert_eq!(
        k("QuotaExceededError", "The quota has been exceeded."),
        StorageErrorKind::QuotaExceeded
    );
    assert_eq!(
        k("AbortError", "The transaction was aborted"),
        StorageErrorKind::Other
    );
    assert_eq!(k("DataError", "bad key"), StorageErrorKind::Other);
}

#[test]
fn config_is_clamped_not_rejected() {
    let mut cfg = Config::new("d");
    cfg.max_batch_records = 0;
    cfg.max_retries = 0;
    cfg.max_batch_bytes = 10;
    let q = Outbox::new(cfg, 0);
    assert_eq!(q.config().max_batch_records, 1);
    assert_eq!(q.config().max_retries, 1);
    assert!(q.config().max_payload_bytes <= 10);
}
