//! The conflict audit (seed 001's `p2p_conflicts`) and the sync log (its
//! `p2p_sync_logs`): bounded in memory, written to storage with the state
//! change that produced them (same op, so a crash keeps both or neither),
//! pruned by age and count.

use std::collections::VecDeque;

use super::codec::{put_text, put_varint, read_count, read_text, read_varint};
use super::json::{write_object, write_string};
use super::model::{Write, WriteId};
use crate::hlc::Hlc;
use crate::wire::{put_id, Reader, WireError};

/// A write as the audit names it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct WriteRef {
    /// The device that wrote it (the writer, not the device that relayed it).
    pub writer: String,
    /// Its HLC.
    pub hlc: Hlc,
    /// Its app timestamp, if any.
    pub updated_at: Option<u64>,
}

impl WriteRef {
    /// The audit's name for `w`.
    pub fn of(w: &Write) -> WriteRef {
        WriteRef { writer: w.id.writer.to_string(), hlc: w.id.hlc, updated_at: w.updated_at }
    }

    fn json(&self) -> String {
        let mut writer = String::new();
        write_string(&mut writer, &self.writer);
        let updated = self.updated_at.map_or("null".to_string(), |u| u.to_string());
        write_object([
            ("device", writer.as_str()),
            ("hlc", format!("\"{}\"", self.hlc).as_str()),
            ("wallMs", self.hlc.wall_ms().to_string().as_str()),
            ("updatedAt", updated.as_str()),
        ])
    }
}

/// Which side's value the document kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Winner {
    /// The value held here.
    Local,
    /// The incoming write.
    Remote,
    /// Some fields from each (per-field last-writer-wins).
    Merged,
}

impl Winner {
    fn as_str(self) -> &'static str {
        match self {
            Winner::Local => "local",
            Winner::Remote => "remote",
            Winner::Merged => "merged",
        }
    }
}

/// One conflict: an incoming write met a value its writer had not seen.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ConflictEntry {
    /// Increasing number of the entry on this device (its storage key).
    pub seq: u64,
    /// When it was resolved (wall clock, Unix ms).
    pub at: u64,
    /// Collection.
    pub collection: String,
    /// Key.
    pub key: String,
    /// The document before (`None`: absent or deleted).
    pub local: Option<String>,
    /// The incoming write's content (`Write::content_json`).
    pub remote: String,
    /// The document after.
    pub final_doc: Option<String>,
    /// The local writes the incoming one had not seen (their stamps).
    pub local_writes: Vec<WriteRef>,
    /// The incoming write's stamp.
    pub remote_write: WriteRef,
    /// What the document kept.
    pub winner: Winner,
    /// The device it came from (authenticated by the envelope; a relay may
    /// differ from the writer).
    pub peer: String,
}

impl ConflictEntry {
    /// Seed 001's `resolution_strategy`: per-field last writer wins, by the
    /// order of `docs/state.md` (app timestamp, HLC, device).
    pub const STRATEGY: &'static str = "last_write_wins";
    /// Seed 001's `resolved_by`.
    pub const RESOLVED_BY: &'static str = "system";

    /// The entry as a JSON object for the app (`mesh.audit.conflicts()`).
    pub fn to_json(&self) -> String {
        let text = |s: &str| {
            let mut o = String::new();
            write_string(&mut o, s);
            o
        };
        let doc = |d: &Option<String>| d.clone().unwrap_or_else(|| "null".into());
        let locals = format!("[{}]", self.local_writes.iter().map(WriteRef::json).collect::<Vec<_>>().join(","));
        write_object([
            ("seq", self.seq.to_string().as_str()),
            ("at", self.at.to_string().as_str()),
            ("collection", text(&self.collection).as_str()),
            ("key", text(&self.key).as_str()),
            ("local", doc(&self.local).as_str()),
            ("remote", self.remote.as_str()),
            ("final", doc(&self.final_doc).as_str()),
            ("localWrites", locals.as_str()),
            ("remoteWrite", self.remote_write.json().as_str()),
            ("winner", text(self.winner.as_str()).as_str()),
            ("strategy", text(Self::STRATEGY).as_str()),
            ("resolvedBy", text(Self::RESOLVED_BY).as_str()),
            ("peer", text(&self.peer).as_str()),
        ])
    }

    /// The stored form.
    pub fn encode(&self) -> Result<Vec<u8>, WireError> {
        let mut o = vec![1u8];
        o.extend_from_slice(&self.seq.to_be_bytes());
        o.extend_from_slice(&self.at.to_be_bytes());
        put_id(&mut o, &self.collection)?;
        for t in [Some(&self.key), self.local.as_ref(), Some(&self.remote), self.final_doc.as_ref()] {
            match t {
                Some(t) => {
                    o.push(1);
                    put_text(&mut o, t, usize::MAX)?;
                }
                None => o.push(0),
            }
        }
        put_varint(&mut o, self.local_writes.len() as u64);
        for w in self.local_writes.iter().chain([&self.remote_write]) {
            put_id(&mut o, &w.writer)?;
            o.extend_from_slice(&w.hlc.to_packed().to_be_bytes());
            match w.updated_at {
                Some(u) => {
                    o.push(1);
                    o.extend_from_slice(&u.to_be_bytes());
                }
                None => o.push(0),
            }
        }
        o.push(self.winner as u8);
        put_id(&mut o, &self.peer)?;
        Ok(o)
    }

    /// The inverse of [`ConflictEntry::encode`] (total).
    pub fn decode(bytes: &[u8]) -> Result<ConflictEntry, WireError> {
        let mut r = Reader { rest: bytes };
        if r.u8()? != 1 {
            return Err(WireError::BadField);
        }
        let seq = r.u64()?;
        let at = r.u64()?;
        let collection = r.id()?;
        let mut texts = Vec::new();
        for _ in 0..4 {
            texts.push(match r.u8()? {
                0 => None,
                1 => Some(read_text(&mut r, usize::MAX)?.to_string()),
                _ => return Err(WireError::BadField),
            });
        }
        let (Some(key), Some(remote)) = (texts[0].take(), texts[2].take()) else { return Err(WireError::BadField) };
        let n = read_count(&mut r, usize::from(u16::MAX))?;
        let mut refs = Vec::new();
        for _ in 0..=n {
            let writer = r.id()?;
            let hlc = Hlc::from_packed(r.u64()?);
            let updated_at = match r.u8()? {
                0 => None,
                1 => Some(r.u64()?),
                _ => return Err(WireError::BadField),
            };
            refs.push(WriteRef { writer, hlc, updated_at });
        }
        let remote_write = refs.pop().ok_or(WireError::BadField)?;
        let winner = match r.u8()? {
            0 => Winner::Local,
            1 => Winner::Remote,
            2 => Winner::Merged,
            _ => return Err(WireError::BadField),
        };
        let peer = r.id()?;
        Ok(ConflictEntry {
            seq,
            at,
            collection,
            key,
            local: texts[1].take(),
            remote,
            final_doc: texts[3].take(),
            local_writes: refs,
            remote_write,
            winner,
            peer,
        })
    }
}

/// Seed 001's sync log statuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SyncStatus {
    /// Applied (or already held).
    Success,
    /// Applied, with at least one conflict entry.
    Conflict,
    /// Refused or failed.
    Error,
    /// Nothing to do, or deliberately not applied (e.g. a key deleted and
    /// purged on the peer).
    Skipped,
}

impl SyncStatus {
    /// The seed's word.
    pub fn as_str(self) -> &'static str {
        match self {
            SyncStatus::Success => "success",
            SyncStatus::Conflict => "conflict",
            SyncStatus::Error => "error",
            SyncStatus::Skipped => "skipped",
        }
    }
}

/// One sync log row: a received batch, a reconciliation, a refusal.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SyncLogEntry {
    /// Increasing number on this device.
    pub seq: u64,
    /// Wall clock, Unix ms.
    pub at: u64,
    /// The peer involved.
    pub peer: String,
    /// The collection (empty when not about one).
    pub collection: String,
    /// Outcome.
    pub status: SyncStatus,
    /// Short reason (`writes`, `reconciliation`, `writer mismatch`, …).
    pub reason: String,
    /// Figures as a JSON object.
    pub details: String,
}

impl SyncLogEntry {
    /// The row as a JSON object for the app (`mesh.audit.syncLog()`).
    pub fn to_json(&self) -> String {
        let text = |s: &str| {
            let mut o = String::new();
            write_string(&mut o, s);
            o
        };
        write_object([
            ("seq", self.seq.to_string().as_str()),
            ("at", self.at.to_string().as_str()),
            ("peer", text(&self.peer).as_str()),
            ("collection", text(&self.collection).as_str()),
            ("status", text(self.status.as_str()).as_str()),
            ("reason", text(&self.reason).as_str()),
            ("details", self.details.as_str()),
        ])
    }

    /// The stored form.
    pub fn encode(&self) -> Result<Vec<u8>, WireError> {
        let mut o = vec![1u8];
        o.extend_from_slice(&self.seq.to_be_bytes());
        o.extend_from_slice(&self.at.to_be_bytes());
        o.push(self.status as u8);
        for t in [&self.peer, &self.collection, &self.reason, &self.details] {
            put_varint(&mut o, t.len() as u64);
            o.extend_from_slice(t.as_bytes());
        }
        Ok(o)
    }

    /// The inverse of [`SyncLogEntry::encode`] (total).
    pub fn decode(bytes: &[u8]) -> Result<SyncLogEntry, WireError> {
        let mut r = Reader { rest: bytes };
        if r.u8()? != 1 {
            return Err(WireError::BadField);
        }
        let seq = r.u64()?;
        let at = r.u64()?;
        let status = match r.u8()? {
            0 => SyncStatus::Success,
            1 => SyncStatus::Conflict,
            2 => SyncStatus::Error,
            3 => SyncStatus::Skipped,
            _ => return Err(WireError::BadField),
        };
        let mut t = Vec::new();
        for _ in 0..4 {
            let n = usize::try_from(read_varint(&mut r)?).map_err(|_| WireError::BadField)?;
            t.push(core::str::from_utf8(r.take(n)?).map_err(|_| WireError::BadField)?.to_string());
        }
        let details = t.pop().unwrap_or_default();
        let reason = t.pop().unwrap_or_default();
        let collection = t.pop().unwrap_or_default();
        let peer = t.pop().unwrap_or_default();
        Ok(SyncLogEntry { seq, at, peer, collection, status, reason, details })
    }
}

/// A bounded list of entries with the pruning the storage must mirror.
#[derive(Debug)]
pub(crate) struct Bounded<T> {
    pub(crate) entries: VecDeque<T>,
    pub(crate) next_seq: u64,
    /// Entries added since the last op was issued.
    pub(crate) unsaved: Vec<T>,
    /// Stored entries below this seq must be deleted (set by pruning).
    pub(crate) prune_below: Option<u64>,
    max: usize,
}

/// What a bounded list needs of its entries.
pub(crate) trait Logged: Clone {
    fn seq(&self) -> u64;
    fn at(&self) -> u64;
}

impl Logged for ConflictEntry {
    fn seq(&self) -> u64 {
        self.seq
    }
    fn at(&self) -> u64 {
        self.at
    }
}

impl Logged for SyncLogEntry {
    fn seq(&self) -> u64 {
        self.seq
    }
    fn at(&self) -> u64 {
        self.at
    }
}

impl<T: Logged> Bounded<T> {
    pub(crate) fn new(max: usize) -> Self {
        Bounded { entries: VecDeque::new(), next_seq: 1, unsaved: Vec::new(), prune_below: None, max: max.max(1) }
    }

    /// Entries read back at start, in `seq` order (the store's key order);
    /// the newest `max` are kept.
    pub(crate) fn restore(&mut self, loaded: Vec<T>) {
        self.next_seq = loaded.iter().map(|e| e.seq() + 1).max().unwrap_or(1);
        let drop = loaded.len().saturating_sub(self.max);
        if drop > 0 {
            self.prune_below = Some(loaded[drop].seq());
        }
        self.entries = loaded.into_iter().skip(drop).collect();
    }

    /// Adds an entry (its `seq` is set by `make`).
    pub(crate) fn push(&mut self, make: impl FnOnce(u64) -> T) -> T {
        let e = make(self.next_seq);
        self.next_seq += 1;
        self.entries.push_back(e.clone());
        self.unsaved.push(e.clone());
        while self.entries.len() > self.max {
            self.pop_oldest();
        }
        e
    }

    fn pop_oldest(&mut self) {
        if let Some(old) = self.entries.pop_front() {
            self.prune_below = Some(self.prune_below.unwrap_or(0).max(old.seq() + 1));
            self.unsaved.retain(|e| e.seq() > old.seq());
        }
    }

    /// Drops entries older than `before` (wall ms).
    pub(crate) fn prune_older(&mut self, before: u64) {
        while self.entries.front().is_some_and(|e| e.at() < before) {
            self.pop_oldest();
        }
    }

    pub(crate) fn since(&self, since: u64) -> impl Iterator<Item = &T> {
        self.entries.iter().filter(move |e| e.at() >= since)
    }
}

/// Remembers which incoming writes were audited, so a write delivered
/// twice (two routes, a relay) is audited once. Searched only when a
/// conflict is found, so a bounded list is enough.
#[derive(Debug, Default)]
pub(crate) struct SeenPairs {
    order: VecDeque<(u64, WriteId)>,
}

impl SeenPairs {
    const MAX: usize = 4096;

    /// True the first time `(key_hash, remote)` is offered.
    pub(crate) fn first(&mut self, key_hash: u64, remote: &WriteId) -> bool {
        if self.order.iter().any(|(h, id)| *h == key_hash && id == remote) {
            return false;
        }
        self.order.push_back((key_hash, remote.clone()));
        if self.order.len() > Self::MAX {
            self.order.pop_front();
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(seq: u64) -> ConflictEntry {
        let r = |d: &str, w: u64, u: Option<u64>| WriteRef { writer: d.into(), hlc: Hlc::new(w, 1).unwrap(), updated_at: u };
        ConflictEntry {
            seq,
            at: 1_000 + seq,
            collection: "products".into(),
            key: "sku-1 \"x\"".into(),
            local: Some("{\"price\":4}".into()),
            remote: "{\"price\":5}".into(),
            final_doc: Some("{\"price\":5}".into()),
            local_writes: vec![r("pos-1", 10, None), r("pos-3", 11, Some(7))],
            remote_write: r("pos-2", 12, None),
            winner: Winner::Remote,
            peer: "pos-2".into(),
        }
    }

    #[test]
    fn entries_round_trip_and_render() {
        let e = entry(3);
        assert_eq!(ConflictEntry::decode(&e.encode().unwrap()).unwrap(), e);
        let mut e2 = entry(4);
        e2.local = None;
        e2.final_doc = None;
        e2.local_writes.clear();
        assert_eq!(ConflictEntry::decode(&e2.encode().unwrap()).unwrap(), e2);
        let json = e.to_json();
        assert!(json.contains("\"strategy\":\"last_write_wins\"") && json.contains("\"resolvedBy\":\"system\""));
        assert_eq!(super::super::json::validate(&json), Ok(()));
        let l = SyncLogEntry {
            seq: 9,
            at: 5,
            peer: "p".into(),
            collection: String::new(),
            status: SyncStatus::Skipped,
            reason: "purged".into(),
            details: "{}".into(),
        };
        assert_eq!(SyncLogEntry::decode(&l.encode().unwrap()).unwrap(), l);
        assert_eq!(super::super::json::validate(&l.to_json()), Ok(()));
        assert!(ConflictEntry::decode(&[1, 2]).is_err() && SyncLogEntry::decode(&[]).is_err());
    }

    #[test]
    fn bounded_by_count_and_age_and_tells_storage_what_to_prune() {
        let mut b: Bounded<ConflictEntry> = Bounded::new(3);
        for _ in 0..5 {
            b.push(entry);
        }
        assert_eq!(b.entries.iter().map(|e| e.seq).collect::<Vec<_>>(), [3, 4, 5]);
        assert_eq!(b.prune_below, Some(3));
        assert_eq!(b.unsaved.len(), 3);
        b.prune_older(1_005);
        assert_eq!(b.entries.iter().map(|e| e.seq).collect::<Vec<_>>(), [5]);
        assert_eq!(b.prune_below, Some(5));
        let mut r: Bounded<ConflictEntry> = Bounded::new(2);
        r.restore(vec![entry(2), entry(5), entry(7)]);
        assert_eq!((r.next_seq, r.prune_below, r.entries.len()), (8, Some(5), 2));
    }
}
