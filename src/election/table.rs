//! The peer table: a `Vec` kept sorted by device id. A venue has tens of
//! devices, where a sorted vector beats a tree map in every build (and the
//! order stays deterministic for the simulator).

use super::Peer;

#[derive(Debug, Default)]
pub(super) struct PeerTable {
    rows: Vec<(String, Peer)>,
}

impl PeerTable {
    fn find(&self, id: &str) -> Result<usize, usize> {
        self.rows.binary_search_by(|(k, _)| k.as_str().cmp(id))
    }

    pub(super) fn get(&self, id: &str) -> Option<&Peer> {
        self.find(id).ok().map(|i| &self.rows[i].1)
    }

    /// The row of `id`, created by `fresh` when missing (then `true`).
    pub(super) fn upsert(&mut self, id: &str, fresh: impl FnOnce() -> Peer) -> (&mut Peer, bool) {
        match self.find(id) {
            Ok(i) => (&mut self.rows[i].1, false),
            Err(i) => {
                self.rows.insert(i, (id.to_string(), fresh()));
                (&mut self.rows[i].1, true)
            }
        }
    }

    pub(super) fn len(&self) -> usize {
        self.rows.len()
    }

    pub(super) fn contains(&self, id: &str) -> bool {
        self.find(id).is_ok()
    }

    /// The row a better newcomer replaces when the table is full: the lowest
    /// score, then the stalest, never `keep` (the recognized hub).
    pub(super) fn victim(&self, keep: Option<&str>) -> Option<(&str, u64)> {
        self.rows
            .iter()
            .filter(|(k, _)| Some(k.as_str()) != keep)
            .min_by_key(|(k, p)| (p.score, p.last_seen, k.as_str()))
            .map(|(k, p)| (k.as_str(), p.score))
    }

    pub(super) fn remove(&mut self, id: &str) -> Option<Peer> {
        self.find(id).ok().map(|i| self.rows.remove(i).1)
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = (&String, &Peer)> {
        self.rows.iter().map(|(k, v)| (k, v))
    }

    pub(super) fn values(&self) -> impl Iterator<Item = &Peer> {
        self.rows.iter().map(|(_, v)| v)
    }
}
