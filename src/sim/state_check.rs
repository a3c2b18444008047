//! The checker of the shared-state simulation. It recomputes, from every
//! write that became durable, what each document must be — straight from
//! the definitions of `docs/state.md`, without the store's live sets — and
//! asks that every device holds exactly that, with equal checksums, that
//! counters equal the sum of their increments, that every conflict entry
//! names two writes that were really concurrent (by the harness's ground
//! truth), and that every write lost to a concurrent one left an entry.

use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;

use super::state::{Event, Truth};
use super::world::Observed;
use crate::hlc::Hlc;
use crate::state::json;
use crate::state::model::Op;
use crate::state::{ConflictEntry, Store, Write, WriteId, WriteRef};

/// The order of `docs/state.md`, written out again: app timestamp present,
/// its value, HLC, device bytes.
fn ord(w: &Write) -> (bool, u64, Hlc, &[u8]) {
    (w.updated_at.is_some(), w.updated_at.unwrap_or(0), w.id.hlc, w.id.writer.as_bytes())
}

fn max<'a>(it: impl Iterator<Item = &'a Rc<Write>>) -> Option<&'a Rc<Write>> {
    it.max_by(|a, b| ord(a).cmp(&ord(b)))
}

fn names(w: &Write, f: &str) -> bool {
    matches!(&w.op, Op::Put(fs) | Op::Patch(fs) if fs.iter().any(|(k, _)| &**k == f))
}

fn value<'a>(w: &'a Write, f: &str) -> Option<&'a str> {
    match &w.op {
        Op::Put(fs) | Op::Patch(fs) => fs.iter().find(|(k, _)| &**k == f).map(|(_, v)| &**v),
        _ => None,
    }
}

/// Writes that take part in field `f`'s slot: every put and delete, and
/// the patches that name it.
fn field_slot<'a>(writes: &'a [Rc<Write>], f: &'a str) -> impl Iterator<Item = &'a Rc<Write>> {
    writes.iter().filter(move |w| matches!(w.op, Op::Put(_) | Op::Delete) || names(w, f))
}

fn field_names(writes: &[Rc<Write>]) -> BTreeSet<&str> {
    writes
        .iter()
        .flat_map(|w| match &w.op {
            Op::Put(fs) | Op::Patch(fs) => fs.iter().map(|(k, _)| &**k).collect(),
            _ => Vec::new(),
        })
        .collect()
}

/// The document all these writes make, and per counter field the sum of
/// every increment (for the separate "sum of increments" check).
fn expected(writes: &[Rc<Write>]) -> (Option<String>, BTreeMap<String, i64>) {
    let mut lanes: BTreeMap<(String, String), &Rc<Write>> = BTreeMap::new();
    let mut increments: BTreeMap<String, i64> = BTreeMap::new();
    for w in writes {
        if let Op::Add(c) = &w.op {
            let lane = lanes.entry((c.field.to_string(), w.id.writer.to_string())).or_insert(w);
            if ord(w) > ord(lane) {
                *lane = w;
            }
            let sum = increments.entry(c.field.to_string()).or_insert(0);
            *sum = sum.saturating_add(c.delta);
        }
    }
    if max(writes.iter()).is_none_or(|w| matches!(w.op, Op::Delete)) {
        return (None, increments);
    }
    let mut doc: BTreeMap<String, String> = BTreeMap::new();
    for f in field_names(writes) {
        if let Some(v) = max(field_slot(writes, f)).and_then(|w| value(w, f)) {
            doc.insert(f.to_string(), v.to_string());
        }
    }
    let mut counters: BTreeMap<String, i64> = BTreeMap::new();
    for ((field, _), w) in &lanes {
        if let Op::Add(c) = &w.op {
            let s = counters.entry(field.clone()).or_insert(0);
            *s = s.saturating_add(c.total);
        }
    }
    for (f, n) in counters {
        doc.insert(f, n.to_string());
    }
    (Some(json::write_object(doc.iter().map(|(k, v)| (k.as_str(), v.as_str())))), increments)
}

fn id_of(r: &WriteRef) -> WriteId {
    WriteId { hlc: r.hlc, writer: Rc::from(r.writer.as_str()) }
}

/// Every broken promise of a finished, healed run.
pub fn check(stores: &[Option<&Store>], truth: &Truth, events: &[Observed<Event>]) -> Vec<String> {
    let mut v = Vec::new();
    let running: Vec<&Store> = stores.iter().flatten().copied().collect();
    if running.len() != stores.len() {
        v.push("a device is not running after the heal".into());
        return v;
    }
    for s in &running {
        if s.unsaved_writes() > 0 {
            v.push(format!("{} still has {} unsaved writes", s.device(), s.unsaved_writes()));
        }
    }

    v.extend(converged(&running, &truth.committed));
    let entries: Vec<Rc<ConflictEntry>> = events
        .iter()
        .filter_map(|e| match &e.event {
            Event::Conflict(c) => Some(c.clone()),
            Event::Session(_) => None,
        })
        .collect();
    v.extend(audit(truth, &entries));
    v.truncate(20);
    v
}

/// The audit half of [`check`], against the ground truth of causality:
/// no conflict entry names a sequential pair, and every write of
/// `truth.committed` that lost to a concurrent write left an entry naming
/// it or a later write of its line. Also used by the full-node runs
/// (`mesh/tests/state.rs`), whose harness keeps the same ground truth.
pub fn audit(truth: &Truth, entries: &[Rc<ConflictEntry>]) -> Vec<String> {
    let mut v = Vec::new();
    let mut by_key: BTreeMap<(String, Rc<str>), Vec<Rc<Write>>> = BTreeMap::new();
    for (c, k, w) in &truth.committed {
        by_key.entry((c.clone(), k.clone())).or_default().push(w.clone());
    }

    // Conflict entries name concurrent pairs only.
    for e in entries {
        let key: Rc<str> = Rc::from(e.key.as_str());
        let r = id_of(&e.remote_write);
        for l in &e.local_writes {
            if !truth.concurrent(&e.collection, &key, &id_of(l), &r) {
                v.push(format!("{}/{}: a sequential pair was audited as a conflict: {l:?} and {r:?}", e.collection, e.key));
            }
        }
    }

    // Every write lost to a write that had not seen it left an entry that
    // names it or a later write of its line (one that had seen it).
    for ((c, k), writes) in &by_key {
        let stale_import = writes.iter().any(|a| writes.iter().any(|b| truth.saw(c, k, &a.id, &b.id) && ord(a) < ord(b)));
        if stale_import {
            continue; // an explicitly older updatedAt lost to what it saw: not a conflict
        }
        let named = |a: &WriteId| {
            entries.iter().filter(|e| e.collection == *c && *e.key == **k).any(|e| {
                e.local_writes.iter().chain([&e.remote_write]).map(id_of).any(|x| x == *a || truth.saw(c, k, &x, a))
            })
        };
        let mut lost: Vec<&WriteId> = Vec::new();
        for f in field_names(writes) {
            if let Some(winner) = max(field_slot(writes, f)) {
                lost.extend(field_slot(writes, f).filter(|a| truth.concurrent(c, k, &a.id, &winner.id)).map(|a| &a.id));
            }
        }
        for a in lost {
            if !named(a) {
                v.push(format!("{c}/{k}: {a:?} lost to a concurrent write and no conflict entry names its line"));
            }
        }
    }
    v.truncate(20);
    v
}

/// The convergence half of [`check`]: every device holds what the
/// last-writer-wins oracle computes from `committed` (every write durable on
/// its writer), counters equal the sum of their increments, and checksums
/// are equal. Also used by the full-node runs (`mesh/tests/state.rs`).
pub fn converged(running: &[&Store], committed: &[(String, Rc<str>, Rc<Write>)]) -> Vec<String> {
    let mut v = Vec::new();
    // Every device holds what the oracle says, with equal checksums.
    let mut by_key: BTreeMap<(String, Rc<str>), Vec<Rc<Write>>> = BTreeMap::new();
    for (c, k, w) in committed {
        by_key.entry((c.clone(), k.clone())).or_default().push(w.clone());
    }
    let mut keys: BTreeSet<(String, Rc<str>)> = by_key.keys().cloned().collect();
    for s in running {
        for c in s.collections() {
            keys.extend(s.key_states(c).map(|(k, _)| (c.to_string(), k.clone())));
        }
    }
    for (c, k) in &keys {
        let writes = by_key.get(&(c.clone(), k.clone())).cloned().unwrap_or_default();
        let (doc, increments) = expected(&writes);
        for s in running {
            let got = s.get(c, k);
            if got != doc {
                v.push(format!("{} {c}/{k}: holds {got:?}, the oracle says {doc:?}", s.device()));
            }
        }
        // Counters are the sum of every increment.
        if let Some(d) = &doc {
            let fields = json::split_object(d).unwrap_or_default();
            for (f, sum) in &increments {
                let shown = fields.iter().find(|(n, _)| n == f).and_then(|(_, x)| x.parse::<i64>().ok());
                if shown != Some(*sum) {
                    v.push(format!("{c}/{k}.{f}: counter {shown:?}, increments sum to {sum}"));
                }
            }
        }
    }
    let collections: BTreeSet<&str> = running.iter().flat_map(|s| s.collections()).collect();
    for c in collections {
        let sums: BTreeSet<(u64, u64)> = running.iter().map(|s| s.checksum(c)).map(|x| (x.count, x.sum)).collect();
        if sums.len() > 1 {
            v.push(format!("{c}: devices disagree on the checksum: {sums:?}"));
        }
    }

    v
}
