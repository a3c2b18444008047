//! The binary bodies of the election's messages, carried inside the signed
//! envelope (`PROTOCOL.md` (Part 3) §3 has the byte tables).
//!
//! Conventions as in the envelope: unsigned big-endian integers; an id is a
//! length byte (1..=64) followed by that many bytes of the id alphabet. Byte
//! 0 of every body is its **type**, which must agree with the envelope kind:
//!
//! | type | body | envelope kind |
//! |---|---|---|
//! | `0x01` | Heartbeat | HEARTBEAT (1) |
//! | `0x02` | HubClaim | HUB_CLAIM (2) |
//! | `0x03` | Join | PRESENCE (3) |
//! | `0x04` | Leave | PRESENCE (3) |
//!
//! Scores are `u32` milli-points (the score module's range, max 1 250 000);
//! larger values are sent as `u32::MAX`. Decoding is total: any byte string
//! gives a [`Body`] or a [`WireError`], never a panic, and reads at most 156
//! bytes. Bytes after the fields a type defines are ignored, so a later
//! protocol version may append fields without breaking older devices
//! (version 1 senders append nothing); reserved flag bits likewise.

use crate::election::{ElectionMsg, Term};
use crate::envelope::{Kind, MAX_ID_LEN};
use crate::wire::{put_id, Reader};
pub use crate::wire::WireError;
use crate::score::DeviceKind;

/// The mesh protocol version this code speaks, announced in every Join.
pub const PROTOCOL_VERSION: u8 = 1;

/// Body type byte of a heartbeat.
pub const TYPE_HEARTBEAT: u8 = 0x01;
/// Body type byte of a hub claim.
pub const TYPE_HUB_CLAIM: u8 = 0x02;
/// Body type byte of a join (presence).
pub const TYPE_JOIN: u8 = 0x03;
/// Body type byte of a clean leave.
pub const TYPE_LEAVE: u8 = 0x04;

/// Heartbeat flag: a term follows.
pub const HB_TERM: u8 = 0x01;
/// Heartbeat flag: the sender recognizes a hub.
pub const HB_HUB: u8 = 0x02;
/// Heartbeat flag: that hub is the term's hub (its id is not repeated).
pub const HB_HUB_IS_TERM_HUB: u8 = 0x04;
/// Heartbeat flag: the sender is the term's hub and has ended that term — it
/// neither acts nor claims in it (`PROTOCOL.md` Part 3 §3.3, §9.7). Requires
/// [`HB_TERM`]; receivers that predate it ignore it (reserved bits).
pub const HB_TERM_ENDED: u8 = 0x08;
/// Heartbeat flag: the sender does not reach the broker (its election runs
/// over direct routes only): it ranks below every device that does (Part 3
/// §9.8). Receivers that predate it ignore it.
pub const HB_DIRECT_ONLY: u8 = 0x10;

/// Longest body [`decode`] reads: a heartbeat with a term and a separate hub
/// id of 64 bytes each.
pub const MAX_BODY_LEN: usize = 1 + 1 + (8 + 4 + 1 + MAX_ID_LEN) + (1 + MAX_ID_LEN) + 4 + 8;

/// What a device can do besides the election, as announced in its Join.
/// Bits the receiver does not know are kept and ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Capabilities(pub u32);

impl Capabilities {
    /// Nothing announced.
    pub const NONE: Capabilities = Capabilities(0);
    /// Keeps replicas of other devices' commands (replication layer).
    pub const REPLICA: Capabilities = Capabilities(1 << 0);
    /// Accepts WebRTC data channels (routing layer).
    pub const WEBRTC: Capabilities = Capabilities(1 << 1);
    /// Its storage is persistent (`navigator.storage.persist()` granted), so
    /// WebKit's 7-day eviction does not apply.
    pub const PERSISTENT_STORAGE: Capabilities = Capabilities(1 << 2);

    /// The raw bits.
    pub fn bits(self) -> u32 {
        self.0
    }
    /// Whether every bit of `other` is set.
    pub fn contains(self, other: Capabilities) -> bool {
        self.0 & other.0 == other.0
    }
    /// The union.
    pub fn with(self, other: Capabilities) -> Capabilities {
        Capabilities(self.0 | other.0)
    }
}

/// The content of a Join: who the device is, besides its id.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PresenceInfo {
    /// The sender's [`PROTOCOL_VERSION`].
    pub protocol: u8,
    /// Device kind (unknown codes decode as `Other`).
    pub kind: DeviceKind,
    /// Capability bits.
    pub capabilities: Capabilities,
    /// Score when it joined, milli-points (heartbeats carry the current one).
    pub score: u64,
}

/// A decoded body.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Body {
    /// "I am here" (retained presence).
    Join(PresenceInfo),
    /// Clean leave.
    Leave,
    /// Liveness; fields as [`ElectionMsg::Heartbeat`].
    Heartbeat {
        /// Highest term the sender has seen.
        term: Option<Term>,
        /// The hub the sender recognizes.
        hub: Option<String>,
        /// Current score, milli-points.
        score: u64,
        /// Outbox depth.
        queue_depth: u64,
        /// The sender ended its own term (flag [`HB_TERM_ENDED`]).
        ended: bool,
        /// The sender does not reach the broker (flag [`HB_DIRECT_ONLY`]).
        direct_only: bool,
    },
    /// Claim of term `(term, score, sender)`.
    HubClaim {
        /// Term number.
        term: u64,
        /// Score at claim time, milli-points.
        score: u64,
    },
}


impl Body {
    /// The envelope kind this body travels in.
    pub fn kind(&self) -> Kind {
        match self {
            Body::Join(_) | Body::Leave => Kind::Presence,
            Body::Heartbeat { .. } => Kind::Heartbeat,
            Body::HubClaim { .. } => Kind::HubClaim,
        }
    }

    /// The type byte.
    pub fn type_code(&self) -> u8 {
        match self {
            Body::Heartbeat { .. } => TYPE_HEARTBEAT,
            Body::HubClaim { .. } => TYPE_HUB_CLAIM,
            Body::Join(_) => TYPE_JOIN,
            Body::Leave => TYPE_LEAVE,
        }
    }

    /// The election's view of it.
    pub fn to_election(&self) -> ElectionMsg {
        match self {
            Body::Join(info) => ElectionMsg::Join { score: info.score },
            Body::Leave => ElectionMsg::Leave,
            Body::Heartbeat { term, hub, score, queue_depth, ended, direct_only } => ElectionMsg::Heartbeat {
                term: term.clone(),
                hub: hub.clone(),
                score: *score,
                queue_depth: *queue_depth,
                ended: *ended,
                direct_only: *direct_only,
            },
            Body::HubClaim { term, score } => ElectionMsg::HubClaim { term: *term, score: *score },
        }
    }

    /// The body for an election message; a Join takes `me`'s info with the
    /// message's score.
    pub fn from_election(msg: ElectionMsg, me: &PresenceInfo) -> Body {
        match msg {
            ElectionMsg::Join { score } => Body::Join(PresenceInfo { score, ..me.clone() }),
            ElectionMsg::Leave => Body::Leave,
            ElectionMsg::Heartbeat { term, hub, score, queue_depth, ended, direct_only } => {
                Body::Heartbeat { term, hub, score, queue_depth, ended, direct_only }
            }
            ElectionMsg::HubClaim { term, score } => Body::HubClaim { term, score },
        }
    }

    /// Encode. Fails only with [`WireError::BadId`] on an invalid id (our
    /// own caller's bug: ids are validated where they enter the node).
    pub fn encode(&self) -> Result<Vec<u8>, WireError> {
        let mut out = Vec::with_capacity(32);
        out.push(self.type_code());
        match self {
            Body::Join(info) => {
                out.push(info.protocol);
                out.push(info.kind.code());
                out.extend_from_slice(&info.capabilities.0.to_be_bytes());
                put_score(&mut out, info.score);
            }
            Body::Leave => {}
            Body::Heartbeat { term, hub, score, queue_depth, ended, direct_only } => {
                let same = matches!((term, hub), (Some(t), Some(h)) if t.hub == *h);
                let ended = *ended && term.is_some();
                let mut flags = 0;
                for (set, bit) in [(term.is_some(), HB_TERM), (hub.is_some(), HB_HUB), (same, HB_HUB_IS_TERM_HUB), (ended, HB_TERM_ENDED), (*direct_only, HB_DIRECT_ONLY)] {
                    if set {
                        flags |= bit;
                    }
                }
                out.push(flags);
                if let Some(t) = term {
                    out.extend_from_slice(&t.number.to_be_bytes());
                    put_score(&mut out, t.score);
                    put_id(&mut out, &t.hub)?;
                }
                if let (Some(h), false) = (hub, same) {
                    put_id(&mut out, h)?;
                }
                put_score(&mut out, *score);
                out.extend_from_slice(&queue_depth.to_be_bytes());
            }
            Body::HubClaim { term, score } => {
                out.extend_from_slice(&term.to_be_bytes());
                put_score(&mut out, *score);
            }
        }
        Ok(out)
    }
}

fn put_score(out: &mut Vec<u8>, score: u64) {
    out.extend_from_slice(&u32::try_from(score).unwrap_or(u32::MAX).to_be_bytes());
}

/// Decode a body. Total; trailing bytes are ignored (see the module docs).
pub fn decode(bytes: &[u8]) -> Result<Body, WireError> {
    let (&ty, rest) = bytes.split_first().ok_or(WireError::Empty)?;
    let mut r = Reader { rest };
    Ok(match ty {
        TYPE_JOIN => {
            let protocol = r.u8()?;
            let kind = DeviceKind::from_code(r.u8()?);
            let capabilities = Capabilities(r.u32()?);
            let score = u64::from(r.u32()?);
            Body::Join(PresenceInfo { protocol, kind, capabilities, score })
        }
        TYPE_LEAVE => Body::Leave,
        TYPE_HEARTBEAT => {
            let flags = r.u8()?;
            let same = flags & HB_HUB_IS_TERM_HUB != 0;
            if same && flags & (HB_TERM | HB_HUB) != HB_TERM | HB_HUB {
                return Err(WireError::BadFlags(flags));
            }
            let term = if flags & HB_TERM != 0 {
                let number = r.u64()?;
                let score = u64::from(r.u32()?);
                let hub = r.id()?;
                Some(Term { number, score, hub })
            } else {
                None
            };
            let hub = match (flags & HB_HUB != 0, &term) {
                (false, _) => None,
                (true, Some(t)) if same => Some(t.hub.clone()),
                (true, _) => Some(r.id()?),
            };
            let score = u64::from(r.u32()?);
            let queue_depth = r.u64()?;
            // Meaningless without a term: read as not set.
            let ended = flags & HB_TERM_ENDED != 0 && term.is_some();
            let direct_only = flags & HB_DIRECT_ONLY != 0;
            Body::Heartbeat { term, hub, score, queue_depth, ended, direct_only }
        }
        TYPE_HUB_CLAIM => {
            let term = r.u64()?;
            let score = u64::from(r.u32()?);
            Body::HubClaim { term, score }
        }
        other => return Err(WireError::UnknownType(other)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn term(n: u64, s: u64, hub: &str) -> Term {
        Term { number: n, score: s, hub: hub.into() }
    }

    /// The examples printed in PROTOCOL.md (Part 3) §3. If this fails, the
    /// body format changed: bump PROTOCOL_VERSION and update the document.
    #[test]
    fn documented_examples() {
        let join = Body::Join(PresenceInfo {
            protocol: 1,
            kind: DeviceKind::Kiosk,
            capabilities: Capabilities::REPLICA.with(Capabilities::WEBRTC),
            score: 1_050_000,
        });
        assert_eq!(hex(&join.encode().unwrap()), "0301010000000300100590");
        assert_eq!(hex(&Body::Leave.encode().unwrap()), "04");
        let hb = Body::Heartbeat {
            term: Some(term(7, 1_050_000, "kiosk-1")),
            hub: Some("kiosk-1".into()),
            score: 1_051_000,
            queue_depth: 3,
            ended: false,
            direct_only: false,
        };
        assert_eq!(
            hex(&hb.encode().unwrap()),
            concat!("01", "07", "0000000000000007", "00100590", "07", "6b696f736b2d31", "00100978", "0000000000000003")
        );
        let follower =
            Body::Heartbeat { term: Some(term(7, 1_050_000, "kiosk-1")), hub: None, score: 800_000, queue_depth: 0, ended: false, direct_only: false };
        assert_eq!(
            hex(&follower.encode().unwrap()),
            concat!("01", "01", "0000000000000007", "00100590", "07", "6b696f736b2d31", "000c3500", "0000000000000000")
        );
        let fresh = Body::Heartbeat { term: None, hub: None, score: 250_000, queue_depth: 0, ended: false, direct_only: false };
        assert_eq!(hex(&fresh.encode().unwrap()), "01000003d0900000000000000000");
        let claim = Body::HubClaim { term: 8, score: 800_000 };
        assert_eq!(hex(&claim.encode().unwrap()), "020000000000000008000c3500");
        for b in [join, Body::Leave, hb, follower, fresh, claim] {
            assert_eq!(decode(&b.encode().unwrap()), Ok(b));
        }
    }

    /// A whole HEARTBEAT envelope (v2: the test CA's kiosk-1, chain
    /// attached, body encrypted). Its full bytes are in
    /// `tests/vectors/protocol-v2.json`; here: the layout and the body.
    #[test]
    fn documented_envelope() {
        use crate::envelope::{Envelope, Header, FIXED_OVERHEAD};
        use crate::trust::{testca::TestCa, TrustStore};
        let ca = TestCa::new("demo-venue");
        let creds = ca.credentials("kiosk-1");
        let chain_len = creds.bundle.chain.encode().len();
        let mut store = TrustStore::new(&creds, 1_769_508_000_000, 60_000, 16).unwrap();
        let hlc = crate::hlc::Hlc::new(1_769_508_000_000, 3).unwrap();
        let header = Header { kind: Kind::Heartbeat, sender: "kiosk-1".into(), counter: 42, term: 7, hlc };
        let body = Body::Heartbeat {
            term: Some(term(7, 1_050_000, "kiosk-1")),
            hub: Some("kiosk-1".into()),
            score: 1_051_000,
            queue_depth: 3,
            ended: false,
            direct_only: false,
        };
        let plain = body.encode().unwrap();
        assert_eq!(hex(&plain), "0107000000000000000700100590076b696f736b2d31001009780000000000000003");
        let sealed = Envelope::seal(&header, &plain, &store).unwrap();
        assert_eq!(sealed.len(), FIXED_OVERHEAD + 10 + 7 + chain_len + 34 + 16);
        assert!(!sealed.windows(7).any(|w| w == &plain[..7]), "the body travels encrypted");
        let opened = Envelope::open(&sealed, &mut store, 1_769_508_000_000).unwrap();
        assert_eq!(decode(&opened.body), Ok(body));
    }

    #[test]
    fn errors_and_edges() {
        assert_eq!(decode(&[]), Err(WireError::Empty));
        assert_eq!(decode(&[0]), Err(WireError::UnknownType(0)));
        assert_eq!(decode(&[9, 1, 2]), Err(WireError::UnknownType(9)));
        assert_eq!(decode(&[TYPE_HUB_CLAIM, 0, 0]), Err(WireError::Truncated));
        assert_eq!(decode(&[TYPE_HEARTBEAT, HB_HUB_IS_TERM_HUB | HB_HUB]), Err(WireError::BadFlags(6)));
        assert_eq!(decode(&[TYPE_HEARTBEAT, HB_HUB, 0]), Err(WireError::BadId), "zero-length id");
        assert_eq!(decode(&[TYPE_HEARTBEAT, HB_HUB, 1, b'/']), Err(WireError::BadId));
        assert_eq!(decode(&[TYPE_HEARTBEAT, HB_HUB, 3, b'a']), Err(WireError::Truncated));
        // Trailing bytes and reserved flag bits are ignored (forward compatible).
        assert_eq!(decode(&[TYPE_LEAVE, 1, 2, 3]), Ok(Body::Leave));
        let mut hb = Body::Heartbeat { term: None, hub: None, score: 1, queue_depth: 2, ended: false, direct_only: false }.encode().unwrap();
        hb[1] |= 0x80;
        hb.push(0xff);
        assert_eq!(decode(&hb), Ok(Body::Heartbeat { term: None, hub: None, score: 1, queue_depth: 2, ended: false, direct_only: false }));
        // Unknown device kinds are Other; scores saturate at u32::MAX.
        let join = decode(&[TYPE_JOIN, 9, 77, 0, 0, 0, 0, 0, 0, 0, 1]).unwrap();
        assert_eq!(
            join,
            Body::Join(PresenceInfo {
                protocol: 9,
                kind: DeviceKind::Other,
                capabilities: Capabilities::NONE,
                score: 1
            })
        );
        let big = Body::HubClaim { term: 1, score: u64::MAX };
        assert_eq!(decode(&big.encode().unwrap()), Ok(Body::HubClaim { term: 1, score: u64::from(u32::MAX) }));
        let bad = Body::Heartbeat { term: None, hub: Some("a/b".into()), score: 0, queue_depth: 0, ended: false, direct_only: false };
        assert_eq!(bad.encode(), Err(WireError::BadId));
        assert!(Capabilities(7).contains(Capabilities::WEBRTC) && !Capabilities::NONE.contains(Capabilities::REPLICA));
    }

    #[test]
    fn kinds_and_election_mapping() {
        let me = PresenceInfo { protocol: 1, kind: DeviceKind::Pos, capabilities: Capabilities::NONE, score: 0 };
        let join = Body::from_election(ElectionMsg::Join { score: 5 }, &me);
        assert_eq!((join.kind(), join.to_election()), (Kind::Presence, ElectionMsg::Join { score: 5 }));
        assert_eq!(Body::Leave.kind(), Kind::Presence);
        assert_eq!(Body::HubClaim { term: 1, score: 2 }.kind(), Kind::HubClaim);
        let hb = ElectionMsg::Heartbeat { term: None, hub: None, score: 1, queue_depth: 0, ended: false, direct_only: false };
        assert_eq!(Body::from_election(hb.clone(), &me).to_election(), hb);
        assert_eq!(Body::from_election(hb, &me).kind().code(), TYPE_HEARTBEAT);
    }

    fn id() -> impl Strategy<Value = String> {
        "[A-Za-z0-9._-]{1,64}"
    }

    fn body() -> impl Strategy<Value = Body> {
        let score = 0u64..=u64::from(u32::MAX);
        let term = proptest::option::of((any::<u64>(), score.clone(), id()).prop_map(|(n, s, h)| term(n, s, &h)));
        prop_oneof![
            (any::<u8>(), 0u8..5, any::<u32>(), score.clone()).prop_map(|(protocol, k, c, score)| Body::Join(
                PresenceInfo { protocol, kind: DeviceKind::from_code(k), capabilities: Capabilities(c), score }
            )),
            Just(Body::Leave),
            (term, proptest::option::of(id()), any::<bool>(), score.clone(), any::<u64>(), (any::<bool>(), any::<bool>())).prop_map(
                |(term, hub, same, score, queue_depth, (ended, direct_only))| {
                    let hub = match (&term, same) {
                        (Some(t), true) => Some(t.hub.clone()),
                        _ => hub,
                    };
                    let ended = ended && term.is_some();
                    Body::Heartbeat { term, hub, score, queue_depth, ended, direct_only }
                }
            ),
            (any::<u64>(), score).prop_map(|(term, score)| Body::HubClaim { term, score }),
        ]
    }

    proptest! {
        #[test]
        fn round_trip(b in body()) {
            let bytes = b.encode().unwrap();
            prop_assert!(bytes.len() <= MAX_BODY_LEN);
            prop_assert_eq!(decode(&bytes), Ok(b));
        }

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            if let Ok(b) = decode(&bytes) {
                // Whatever decodes re-encodes to something that decodes the same.
                let again = b.encode().unwrap();
                prop_assert_eq!(decode(&again), Ok(b));
            }
        }

        #[test]
        fn typed_random_bytes_never_panic(ty in 1u8..5, flags in any::<u8>(), rest in proptest::collection::vec(any::<u8>(), 0..160)) {
            let mut bytes = vec![ty, flags];
            bytes.extend(rest);
            let _ = decode(&bytes);
            for cut in 0..bytes.len() {
                let _ = decode(&bytes[..cut]);
            }
        }
    }
}
