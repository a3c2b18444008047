//! Scenario tests of the outbox and inbox decisions (no timings: time is a parameter).

mod commit;
mod inbox;
mod status;

pub(super) use std::slice::from_ref;

pub(super) use super::*;

pub(super) const T0: u64 = 1_700_000_000_000;

pub(super) fn lost() -> StorageError {
    StorageError::new(
        StorageErrorKind::ConnectionLost,
        "Connection to Indexed Database server lost",
    )
}
pub(super) fn other() -> StorageError {
    StorageError::new(StorageErrorKind::Other, "AbortError")
}
pub(super) fn quota() -> StorageError {
    StorageError::new(StorageErrorKind::QuotaExceeded, "QuotaExceededError")
}

pub(super) fn loaded(cfg: Config) -> Outbox {
    let mut q = Outbox::new(cfg, 7);
    q.handle_loaded(Vec::new(), T0);
    q.inbox_mut().handle_loaded(Vec::new(), T0);
    q
}

pub(super) fn ops(q: &mut Outbox) -> Vec<StorageOp> {
    std::iter::from_fn(|| q.poll_storage_op()).collect()
}

pub(super) fn events(q: &mut Outbox) -> Vec<Event> {
    std::iter::from_fn(|| q.poll_event()).collect()
}

pub(super) fn one_op(q: &mut Outbox) -> StorageOp {
    let mut v = ops(q);
    assert_eq!(v.len(), 1, "expected exactly one op, got {v:?}");
    v.remove(0)
}

pub(super) fn done(q: &mut Outbox, op: &StorageOp) {
    q.handle_storage_done(op.op(), Ok(()), T0)
        .expect("op awaited");
}

pub(super) fn put_ids(op: &StorageOp) -> Vec<CommandId> {
    match op {
        StorageOp::PutRecords { records, .. } => records.iter().map(|r| r.id.clone()).collect(),
        other => panic!("expected PutRecords, got {other:?}"),
    }
}

/// Enqueues one command and commits it; returns its id.
pub(super) fn committed(q: &mut Outbox, topic: &str) -> CommandId {
    let t = q.enqueue(topic, vec![1, 2, 3], T0).expect("enqueue");
    let op = one_op(q);
    done(q, &op);
    let ev = events(q);
    assert!(matches!(&ev[..], [Event::Enqueued { .. }]), "{ev:?}");
    t.id().clone()
}

pub(super) fn record(id: &str, status: Status, retry: u32, created: u64) -> CommandRecord {
    CommandRecord {
        id: CommandId::new(id),
        topic: "t".into(),
        payload: vec![0; 10],
        status,
        retry_count: retry,
        created_at: created,
        updated_at: created,
        hlc: 0,
        last_error: None,
        origin: None,
        origin_sig: None,
        origin_chain: None,
    }
}
