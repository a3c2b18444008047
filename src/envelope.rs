//! The signed, encrypted envelope around every mesh message (version 2).
//!
//! Every message a device puts on the mesh (heartbeats, hub claims,
//! replication batches, acks, WebRTC signals, app messages) travels in one
//! compact binary envelope: who sent it, a per-sender counter that identifies
//! it across routes, the election term, an [`Hlc`] timestamp and a body
//! encrypted under the sender's subkey of the venue content key, followed by
//! an Ed25519 signature made with **the sender's own device key**, whose
//! certificate chain (attached, or cached from an earlier envelope) leads to
//! the venue root. A valid envelope means "sent by this certified device,
//! unmodified", and holding one device's material does not let anyone speak
//! as another. The byte layout is specified in `PROTOCOL.md` (Part 2) so
//! other languages can implement it.
//!
//! Parts:
//! * [`Envelope::seal`] / [`Envelope::open`]: encode + encrypt + sign,
//!   verify + decrypt + decode (the signature is checked before the body is
//!   touched);
//! * [`ReplayWindow`] and [`Receiver`]: accept each `(sender, counter)` once;
//! * [`SendCounter`]: hands out the sender's counters and says what to persist
//!   so a restart never reuses one.

mod codec;
mod counter;
mod replay;

pub use codec::{SealOpts, FLAG_CHAIN, FLAG_ENCRYPTED};
pub use counter::SendCounter;
pub use replay::{EnvelopeStats, Receiver, Rejected, ReplayWindow, Verdict, WINDOW_BITS};

use crate::hlc::Hlc;
use crate::trust::{Role, TrustError, TrustStore};
use core::fmt;
use core::str::FromStr;

/// The envelope format version this code writes and reads.
pub const VERSION: u8 = 2;
/// Longest venue or device id, in bytes.
pub const MAX_ID_LEN: usize = 64;
/// Length of the Ed25519 signature at the end of every envelope.
pub const SIG_LEN: usize = 64;
/// Bytes of an envelope besides the two ids, the chain and the body:
/// version, kind, flags, key epoch, two id lengths, counter, term, HLC,
/// body length and signature.
pub const FIXED_OVERHEAD: usize = 1 + 1 + 1 + 1 + 1 + 1 + 8 + 8 + 8 + 4 + SIG_LEN;
/// Longest attached chain: count byte and two length-prefixed certificates.
pub const MAX_CHAIN_LEN: usize = 1 + 2 * (2 + crate::trust::cert::MAX_CERT_LEN);

/// True for a valid venue or device id: 1..=64 bytes of `A-Z a-z 0-9 . _ -`.
///
/// Ids appear in MQTT topic levels (`vm/{venue}/dev/{device}/…`), in logs and
/// in [`MessageId`]'s `sender:counter` form, so the alphabet excludes `/`,
/// `+`, `#`, `:` and anything invisible. A UUID fits.
pub fn is_valid_id(id: &str) -> bool {
    (1..=MAX_ID_LEN).contains(&id.len())
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// What a message is, as one byte on the wire.
///
/// Unknown codes are not an error: they decode as [`Kind::Unknown`] so a
/// device running an older version can still verify, deduplicate and skip
/// (or relay) messages introduced later.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// `1`: periodic liveness: term, score, queue depth.
    Heartbeat,
    /// `2`: "I am the hub for this term" (retained).
    HubClaim,
    /// `3`: device info and capabilities (retained).
    Presence,
    /// `4`: a batch of commands to keep a replica of.
    ReplicateCommand,
    /// `5`: command ids now durable on the sender of the ack.
    SyncAck,
    /// `6`: command ids the cloud has confirmed; replicas may drop them.
    CloudAck,
    /// `7`: WebRTC offer, answer or ICE candidate.
    RtcSignal,
    /// `8`: an application message (transaction, inventory, chat, …).
    AppMessage,
    /// `9`: the hub steps down (leaving, or handing over to a better device).
    HubResign,
    /// `10`: route probe, for round-trip and loss measurement.
    Probe,
    /// `11`: answer to a [`Kind::Probe`].
    ProbeReply,
    /// `12`: a batch of commands from the hub to the cloud's ingest.
    Upload,
    /// `13`: trust material: a revocation list (or, later, a content key
    /// update); only from an admin.
    Trust,
    /// `14`: shared state (`PROTOCOL.md` Part 7): write batches, checksums,
    /// reconciliation steps; the body's first byte tells them apart.
    State,
    /// Any other code (`0` and `15..=255` today).
    Unknown(u8),
}

impl Kind {
    /// The wire code.
    pub fn code(self) -> u8 {
        match self {
            Kind::Heartbeat => 1,
            Kind::HubClaim => 2,
            Kind::Presence => 3,
            Kind::ReplicateCommand => 4,
            Kind::SyncAck => 5,
            Kind::CloudAck => 6,
            Kind::RtcSignal => 7,
            Kind::AppMessage => 8,
            Kind::HubResign => 9,
            Kind::Probe => 10,
            Kind::ProbeReply => 11,
            Kind::Upload => 12,
            Kind::Trust => 13,
            Kind::State => 14,
            Kind::Unknown(code) => code,
        }
    }

    /// The kind for a wire code; known codes always map to their named
    /// variant, so `Kind::from_code(k.code())` normalises `Unknown(1)` to
    /// `Heartbeat`.
    pub fn from_code(code: u8) -> Kind {
        match code {
            1 => Kind::Heartbeat,
            2 => Kind::HubClaim,
            3 => Kind::Presence,
            4 => Kind::ReplicateCommand,
            5 => Kind::SyncAck,
            6 => Kind::CloudAck,
            7 => Kind::RtcSignal,
            8 => Kind::AppMessage,
            9 => Kind::HubResign,
            10 => Kind::Probe,
            11 => Kind::ProbeReply,
            12 => Kind::Upload,
            13 => Kind::Trust,
            14 => Kind::State,
            other => Kind::Unknown(other),
        }
    }

    /// State kinds are published retained and replace the previous state of
    /// their sender: the receiver applies one only if its HLC is newer than
    /// the state it holds. Because that makes them idempotent, a
    /// [`Receiver`] still delivers one that is older than the replay window
    /// (a retained presence is often far behind the sender's counter).
    pub fn is_state(self) -> bool {
        matches!(self, Kind::Presence | Kind::HubClaim)
    }
}

/// Everything in an envelope except the body, the flags and the venue
/// (which comes from the [`TrustStore`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// What the body is.
    pub kind: Kind,
    /// The sending device's id (see [`is_valid_id`]).
    pub sender: String,
    /// Strictly increasing per sender, never reused, also across restarts
    /// (see [`SendCounter`]). With `sender` it is the [`MessageId`].
    pub counter: u64,
    /// The sender's current election term.
    pub term: u64,
    /// The sender's HLC when it sent the message.
    pub hlc: Hlc,
}

impl Header {
    /// The message id this header gives its envelope.
    pub fn id(&self) -> MessageId {
        MessageId { sender: self.sender.clone(), counter: self.counter }
    }
}

/// A verified (and decrypted) envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// Authenticated header fields.
    pub header: Header,
    /// Authenticated plaintext body, opaque to the envelope.
    pub body: Vec<u8>,
    /// The role of the sender's certificate (the node's role rules:
    /// CLOUD_ACK only from `cloud`, TRUST only from `admin`).
    pub role: Role,
    /// Whether the body travelled encrypted.
    pub encrypted: bool,
}

impl Envelope {
    /// Encode, encrypt and sign as `trust`'s device with the default
    /// [`Limits`] and [`SealOpts::for_kind`]. Fails only on API misuse: an
    /// invalid sender id or an oversized body.
    pub fn seal(header: &Header, body: &[u8], trust: &TrustStore) -> Result<Vec<u8>, EnvelopeError> {
        codec::seal(header, body, trust, SealOpts::for_kind(header.kind), Limits::default())
    }

    /// [`seal`](Self::seal) with explicit options and limits.
    pub fn seal_with(header: &Header, body: &[u8], trust: &TrustStore, opts: SealOpts, limits: Limits) -> Result<Vec<u8>, EnvelopeError> {
        codec::seal(header, body, trust, opts, limits)
    }

    /// Verify, decrypt and decode with the default [`Limits`] (no replay
    /// window: see [`Receiver`]). The sender's chain and signature are
    /// checked before the body is touched; a flipped bit anywhere is an
    /// error, never a different message.
    pub fn open(bytes: &[u8], trust: &mut TrustStore, now_wall: u64) -> Result<Envelope, EnvelopeError> {
        Self::open_with(bytes, trust, now_wall, Limits::default())
    }

    /// [`open`](Self::open) with explicit limits.
    pub fn open_with(bytes: &[u8], trust: &mut TrustStore, now_wall: u64, limits: Limits) -> Result<Envelope, EnvelopeError> {
        let v = codec::verify(bytes, trust, limits, now_wall)?;
        codec::decrypt(v, trust)
    }

    /// The id for deduplication across routes.
    pub fn id(&self) -> MessageId {
        self.header.id()
    }

    /// True when the sender's HLC is at most `max_age_ms` older than
    /// `now_wall_ms` (Unix ms). A receiver that restarted has empty replay
    /// windows; dropping event messages that are not fresh closes the gap
    /// through which a recorded message could be replayed to it.
    pub fn is_fresh(&self, now_wall_ms: u64, max_age_ms: u64) -> bool {
        self.header.hlc.wall_ms().saturating_add(max_age_ms) >= now_wall_ms
    }
}

/// Size bounds, so a peer cannot make us allocate or hash without limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest body accepted or sealed, in bytes (at most `u32::MAX`).
    pub max_body: usize,
}

impl Limits {
    /// Default body bound: 256 KiB, far above a heartbeat and enough for a
    /// replication batch; the outbox splits bigger batches.
    pub const DEFAULT_MAX_BODY: usize = 256 * 1024;

    /// Largest whole envelope these limits allow.
    pub fn max_envelope(self) -> usize {
        FIXED_OVERHEAD + 2 * MAX_ID_LEN + MAX_CHAIN_LEN + crate::trust::content::TAG_LEN + self.max_body.min(u32::MAX as usize)
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_body: Self::DEFAULT_MAX_BODY }
    }
}

/// Identifies one message across routes: the sender and its counter. The
/// same envelope arriving over MQTT and WebRTC has the same id.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MessageId {
    /// Sending device.
    pub sender: String,
    /// The sender's counter for this message.
    pub counter: u64,
}

impl fmt::Display for MessageId {
    /// Stable string form `"{sender}:{counter}"`, e.g. `pos-1:42`, for logs,
    /// stats and JS (a `u64` does not fit a JS number, a string does).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.sender, self.counter)
    }
}

impl FromStr for MessageId {
    type Err = EnvelopeError;

    /// Parse the `"{sender}:{counter}"` form.
    fn from_str(s: &str) -> Result<MessageId, EnvelopeError> {
        let (sender, counter) = s.rsplit_once(':').ok_or(EnvelopeError::BadField(Field::Sender))?;
        if !is_valid_id(sender) {
            return Err(EnvelopeError::BadField(Field::Sender));
        }
        if counter.is_empty() || !counter.bytes().all(|b| b.is_ascii_digit()) {
            return Err(EnvelopeError::BadField(Field::Counter));
        }
        let counter = counter.parse().map_err(|_| EnvelopeError::BadField(Field::Counter))?;
        Ok(MessageId { sender: sender.to_string(), counter })
    }
}

/// Which field was malformed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Field {
    /// Venue id: empty, longer than 64 bytes, or outside the id alphabet.
    Venue,
    /// Sender id: same rules.
    Sender,
    /// Counter (only in [`MessageId`]'s string form).
    Counter,
    /// Body length does not match the bytes present.
    BodyLength,
    /// Unknown flag bits set.
    Flags,
    /// The attached chain's framing is malformed.
    Chain,
}

/// Why an envelope could not be sealed or opened.
///
/// From `open`, every variant means "drop this message" (received data never
/// causes a panic). From `seal`, only `BadField`, `TooLarge` and
/// `UnknownKeyId` occur, and they mean our own caller passed invalid input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum EnvelopeError {
    /// Fewer bytes than the fixed parts or the declared lengths need
    /// (including an empty MQTT payload, e.g. a cleared retained message).
    Truncated,
    /// A format version this code does not read.
    BadVersion(u8),
    /// Encrypted under a content key epoch we do not hold (rotation: a
    /// KEY_UPDATE we missed).
    UnknownKeyId(u8),
    /// Longer than the limits allow; rejected before hashing.
    TooLarge {
        /// Bytes given.
        len: usize,
        /// Most allowed.
        max: usize,
    },
    /// The signature does not verify with the sender's certified key:
    /// altered, truncated at a lucky place, or signed by another device in
    /// this sender's name. Nothing in the message can be trusted.
    BadSignature,
    /// No chain attached and none cached for the sender.
    UnknownSender,
    /// The sender's chain is invalid, revoked or names another device, or
    /// the body does not decrypt (see [`TrustError`]).
    Trust(TrustError),
    /// A field is malformed (a signed but malformed envelope is a bug in the
    /// sender; on seal, invalid input from our own caller).
    BadField(Field),
    /// Names another venue.
    WrongVenue,
}

impl fmt::Display for EnvelopeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EnvelopeError::Truncated => f.write_str("envelope truncated"),
            EnvelopeError::BadVersion(v) => write!(f, "unsupported envelope version {v}"),
            EnvelopeError::UnknownKeyId(k) => write!(f, "envelope encrypted under unknown content key epoch {k}"),
            EnvelopeError::TooLarge { len, max } => write!(f, "envelope of {len} bytes exceeds {max}"),
            EnvelopeError::BadSignature => f.write_str("envelope signature does not verify"),
            EnvelopeError::UnknownSender => f.write_str("envelope from a sender with no known certificate"),
            EnvelopeError::Trust(e) => write!(f, "envelope refused: {e}"),
            EnvelopeError::BadField(field) => write!(f, "malformed envelope field {field:?}"),
            EnvelopeError::WrongVenue => f.write_str("envelope is for another venue"),
        }
    }
}

impl std::error::Error for EnvelopeError {}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every shipped broker config drops a PUBLISH whose payload exceeds its
    /// `message_size_limit`: the largest v2 envelope we may send must fit, or
    /// a full replication batch would vanish at the broker (acked, dropped).
    #[test]
    fn largest_envelope_fits_the_brokers_message_size_limit() {
        let max = Limits::default().max_envelope();
        // 98 fixed (6 one-byte fields, counter, term, HLC, body length, 64-byte
        // signature) + 2 × 64 ids + 509 chain + 16 tag + 262,144 body.
        assert_eq!(max, 262_895);
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/config");
        let mut seen = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            for line in text.lines().filter(|l| l.trim_start().starts_with("message_size_limit")) {
                let limit: usize = line.split_whitespace().nth(1).and_then(|v| v.parse().ok()).unwrap();
                assert!(max <= limit, "{}: message_size_limit {limit} < largest envelope {max}", path.display());
                seen += 1;
            }
        }
        assert!(seen >= 5, "the broker configs set message_size_limit ({seen} found)");
    }

    #[test]
    fn id_alphabet() {
        assert!(is_valid_id("pos-1"));
        assert!(is_valid_id("3f2c9a1e-6b7d-4c1a-9e2f-0a1b2c3d4e5f"));
        assert!(is_valid_id(&"a".repeat(64)));
        for bad in ["", "a/b", "a+b", "a#b", "a:b", "a b", "é", &"a".repeat(65)] {
            assert!(!is_valid_id(bad), "{bad:?}");
        }
    }

    #[test]
    fn kind_codes_round_trip() {
        for code in 0..=255u8 {
            assert_eq!(Kind::from_code(code).code(), code);
        }
        assert_eq!(Kind::from_code(1), Kind::Heartbeat);
        assert_eq!(Kind::from_code(12), Kind::Upload);
        assert_eq!(Kind::from_code(13), Kind::Trust);
        assert_eq!(Kind::from_code(14), Kind::State);
        assert_eq!(Kind::from_code(15), Kind::Unknown(15));
        assert_eq!(Kind::from_code(0), Kind::Unknown(0));
        assert!(Kind::Presence.is_state() && Kind::HubClaim.is_state());
        assert!(!Kind::ReplicateCommand.is_state());
    }

    #[test]
    fn message_id_string_form() {
        let id = MessageId { sender: "pos-1".into(), counter: 42 };
        assert_eq!(id.to_string(), "pos-1:42");
        assert_eq!("pos-1:42".parse::<MessageId>(), Ok(id));
        let max = format!("d:{}", u64::MAX);
        assert_eq!(max.parse::<MessageId>().map(|m| m.counter), Ok(u64::MAX));
        for bad in ["", "pos-1", ":1", "pos-1:", "pos-1:-1", "pos-1:+1", "a:b:1", "pos-1:18446744073709551616"] {
            assert!(bad.parse::<MessageId>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn limits_bound_the_whole_envelope() {
        let l = Limits { max_body: 10 };
        assert_eq!(l.max_envelope(), FIXED_OVERHEAD + 128 + MAX_CHAIN_LEN + 16 + 10);
        assert_eq!(FIXED_OVERHEAD, 98);
    }
}
