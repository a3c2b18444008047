//! An in-memory stand-in for the shell's IndexedDB stores, for tests and the
//! simulator: it applies [`PersistOp`]s the way the shell must (all of one
//! op or nothing) and gives back what a reload would read.

use std::collections::BTreeMap;

use super::types::{Loaded, PersistOp};

/// The four state stores plus the clock's high-water mark.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct MemoryDisk {
    /// `state`: `(collection, key) → record`.
    pub keys: BTreeMap<(String, String), Vec<u8>>,
    /// `state_meta`: collection → frontier.
    pub metas: BTreeMap<String, Vec<u8>>,
    /// `meta.state_clock`.
    pub clock: u64,
    /// `state_conflicts`: seq → entry.
    pub conflicts: BTreeMap<u64, Vec<u8>>,
    /// `state_sync_log`: seq → entry.
    pub sync_log: BTreeMap<u64, Vec<u8>>,
}

impl MemoryDisk {
    /// Applies one committed op.
    pub fn apply(&mut self, op: &PersistOp) {
        for k in &op.keys {
            let id = (k.collection.clone(), k.key.clone());
            match &k.record {
                Some(r) => self.keys.insert(id, r.clone()),
                None => self.keys.remove(&id),
            };
        }
        for (name, meta) in &op.collections {
            self.metas.insert(name.clone(), meta.clone());
        }
        self.clock = self.clock.max(op.clock);
        if let Some(below) = op.prune_conflicts_below {
            self.conflicts.retain(|seq, _| *seq >= below);
        }
        if let Some(below) = op.prune_sync_log_below {
            self.sync_log.retain(|seq, _| *seq >= below);
        }
        for e in &op.conflicts {
            if let Ok(b) = e.encode() {
                self.conflicts.insert(e.seq, b);
            }
        }
        for e in &op.sync_log {
            if let Ok(b) = e.encode() {
                self.sync_log.insert(e.seq, b);
            }
        }
    }

    /// What the store reads at start.
    pub fn loaded(&self) -> Loaded {
        Loaded {
            keys: self.keys.iter().map(|((c, k), v)| (c.clone(), k.clone(), v.clone())).collect(),
            collections: self.metas.iter().map(|(c, v)| (c.clone(), v.clone())).collect(),
            clock: self.clock,
            conflicts: self.conflicts.values().cloned().collect(),
            sync_log: self.sync_log.values().cloned().collect(),
        }
    }
}
