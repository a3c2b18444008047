//! Range-based set reconciliation over a collection's keys (in the manner
//! of Negentropy and Merkle search trees): the key space is the 64-bit
//! positions of the keys (`key_position`), cut into a 16-ary tree of nodes
//! by hex digit. Two replicas compare a node by `(count, fingerprint)` —
//! the wrapping sum of the key digests under it — and only where they differ
//! go one level down, until a node holds few enough keys to list them as
//! `(position, digest)` pairs. Each side can answer every range on its own
//! (no session state beyond "who still owes an answer"), and the bytes
//! exchanged grow with the number of differing keys times the depth, not
//! with the size of the collection.

use std::rc::Rc;

use super::collection::Collection;
use super::mutation::{self, Mutation};
use super::wire::{Checksum, Node, Range, RangeBody, MAX_DEPTH};

/// What one side has to do after reading the peer's ranges and requests.
#[derive(Debug, Default)]
pub(crate) struct Answer {
    /// Ranges to send back (deeper nodes, or item lists).
    pub(crate) ranges: Vec<Range>,
    /// Positions of keys the peer has and we lack.
    pub(crate) missing: Vec<u64>,
    /// Positions of keys we both hold in different versions.
    pub(crate) differing: Vec<u64>,
    /// Keys whose writes the peer needs (it holds another version).
    pub(crate) send: Vec<Rc<str>>,
    /// Keys the peer asked for after sending its own version of them:
    /// only the writes it did not send are needed.
    pub(crate) send_new: Vec<Rc<str>>,
    /// Keys the peer does not hold at all: sent, unless the peer has
    /// provably deleted them (`docs/state.md`, "Tombstones").
    pub(crate) peer_lacks: Vec<Rc<str>>,
}

fn nonzero(children: [Checksum; 16]) -> Vec<(u8, Checksum)> {
    (0..16u8).zip(children).filter(|(_, c)| c.count > 0).collect()
}

/// What to say about `node`: its items when there are few, else its children.
fn describe(col: &Collection, node: Node, leaf: usize) -> Range {
    let own = col.fingerprint(node);
    let body = if own.count <= leaf as u64 || node.depth >= MAX_DEPTH {
        RangeBody::Items(col.items(node).into_iter().map(|(p, d, _)| (p, d)).collect())
    } else {
        RangeBody::Children(nonzero(col.children(node)))
    };
    Range { node, body }
}

/// The initiator's first ranges: the root, described.
pub(crate) fn open(col: &Collection, leaf: usize) -> Vec<Range> {
    vec![describe(col, Node::ROOT, leaf)]
}

/// Answers the peer's `ranges`, `missing` and `differing` against `col`.
pub(crate) fn answer(col: &Collection, ranges: &[Range], missing: &[u64], differing: &[u64], leaf: usize) -> Answer {
    let mut a = Answer::default();
    for range in ranges {
        match &range.body {
            RangeBody::Children(theirs) => {
                let own = col.children(range.node);
                let mut peer = [Checksum::default(); 16];
                for (i, c) in theirs {
                    peer[usize::from(*i)] = *c;
                }
                for i in 0..16u8 {
                    let Some(child) = range.node.child(i) else { continue };
                    let (o, p) = (own[usize::from(i)], peer[usize::from(i)]);
                    if o == p {
                        continue;
                    }
                    if p.count == 0 {
                        a.peer_lacks.extend(col.items(child).into_iter().map(|(_, _, k)| k));
                    } else {
                        a.ranges.push(describe(col, child, leaf));
                    }
                }
            }
            RangeBody::Items(theirs) => diff_items(col, range.node, theirs, &mut a),
        }
    }
    if !mutation::active(Mutation::IgnoreMissing) {
        for pos in missing {
            a.peer_lacks.extend(col.keys_at(*pos));
        }
    }
    for pos in differing {
        a.send_new.extend(col.keys_at(*pos));
    }
    crate::outbox::sort::sort(&mut a.send);
    a.send.dedup();
    crate::outbox::sort::sort(&mut a.send_new);
    a.send_new.dedup();
    crate::outbox::sort::sort(&mut a.peer_lacks);
    a.peer_lacks.dedup();
    a
}

/// Compares the peer's full item list of `node` with ours, position by
/// position (two keys may share a position; then their digests are
/// compared as a set).
fn diff_items(col: &Collection, node: Node, theirs: &[(u64, u64)], a: &mut Answer) {
    let mine = col.items(node);
    let (mut i, mut j) = (0, 0);
    while i < mine.len() || j < theirs.len() {
        let pos = match (mine.get(i), theirs.get(j)) {
            (Some(m), Some(t)) => m.0.min(t.0),
            (Some(m), None) => m.0,
            (None, Some(t)) => t.0,
            (None, None) => break,
        };
        let i0 = i;
        while mine.get(i).is_some_and(|m| m.0 == pos) {
            i += 1;
        }
        let j0 = j;
        while theirs.get(j).is_some_and(|t| t.0 == pos) {
            j += 1;
        }
        // Almost always one key per position: compare as sets.
        let my_digests: Vec<u64> = mine[i0..i].iter().map(|m| m.1).collect();
        let their_digests: Vec<u64> = theirs[j0..j].iter().map(|t| t.1).collect();
        let same = my_digests.len() == their_digests.len() && my_digests.iter().all(|d| their_digests.contains(d));
        let keys = mine[i0..i].iter().map(|m| m.2.clone());
        match (i0 == i, j0 == j) {
            (true, _) => a.missing.push(pos),
            (false, true) => a.peer_lacks.extend(keys),
            _ if same => {}
            _ => {
                a.send.extend(keys);
                a.differing.push(pos);
            }
        }
    }
}
