//! Byte layout, signing and verification (layout in `PROTOCOL.md` (Part 2)).
//!
//! ```text
//! version u8 | kind u8 | key_id u8 | venue_len u8 | venue | sender_len u8 | sender
//! | counter u64 BE | term u64 BE | hlc u64 BE | body_len u32 BE | body
//! | tag [32] = HMAC-SHA256(venue secret, every byte before the tag)
//! ```

use super::{is_valid_id, Envelope, EnvelopeError, Field, Header, Kind, Limits, TAG_LEN, VERSION};
use crate::hlc::Hlc;
use core::fmt;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// The venue's shared secret, bound to the venue id and a key id.
///
/// Every paired device of a venue holds the same secret (handing it out is
/// the pairing flow's job, outside this crate). The HMAC state is keyed once
/// here and cloned per message, which saves re-hashing the key each time.
/// `Debug` never prints the secret.
#[derive(Clone)]
pub struct VenueKey {
    venue: String,
    key_id: u8,
    mac: HmacSha256,
}

impl VenueKey {
    /// Shortest secret accepted: 16 bytes (128 bits). Pairing should hand
    /// out 32 random bytes.
    pub const MIN_SECRET_LEN: usize = 16;

    /// Key for `venue` (a valid id) with rotation id `key_id`. Fails with
    /// `BadField(Venue)` or `BadField(Secret)` on a bad id or a short secret.
    pub fn new(venue: &str, key_id: u8, secret: &[u8]) -> Result<VenueKey, EnvelopeError> {
        if !is_valid_id(venue) {
            return Err(EnvelopeError::BadField(Field::Venue));
        }
        if secret.len() < Self::MIN_SECRET_LEN {
            return Err(EnvelopeError::BadField(Field::Secret));
        }
        let mac = HmacSha256::new_from_slice(secret).map_err(|_| EnvelopeError::BadField(Field::Secret))?;
        Ok(VenueKey { venue: venue.to_string(), key_id, mac })
    }

    /// The venue this key belongs to.
    pub fn venue(&self) -> &str {
        &self.venue
    }

    /// The rotation id written into every envelope signed with this key.
    pub fn key_id(&self) -> u8 {
        self.key_id
    }
}

impl fmt::Debug for VenueKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VenueKey").field("venue", &self.venue).field("key_id", &self.key_id).finish_non_exhaustive()
    }
}

/// Offset of the key id byte.
const KEY_ID_AT: usize = 2;
/// Smallest possible envelope: one-byte ids, empty body.
const MIN_LEN: usize = super::FIXED_OVERHEAD + 2;

pub(super) fn seal(header: &Header, body: &[u8], key: &VenueKey, limits: Limits) -> Result<Vec<u8>, EnvelopeError> {
    if !is_valid_id(&header.sender) {
        return Err(EnvelopeError::BadField(Field::Sender));
    }
    let max_body = limits.max_body.min(u32::MAX as usize);
    if body.len() > max_body {
        return Err(EnvelopeError::TooLarge { len: body.len(), max: max_body });
    }
    let venue = key.venue.as_bytes();
    let sender = header.sender.as_bytes();
    let mut out = Vec::with_capacity(super::FIXED_OVERHEAD + venue.len() + sender.len() + body.len());
    out.extend_from_slice(&[VERSION, header.kind.code(), key.key_id]);
    // Both ids were validated as 1..=64 bytes, so the lengths fit a u8.
    out.push(venue.len() as u8);
    out.extend_from_slice(venue);
    out.push(sender.len() as u8);
    out.extend_from_slice(sender);
    out.extend_from_slice(&header.counter.to_be_bytes());
    out.extend_from_slice(&header.term.to_be_bytes());
    out.extend_from_slice(&header.hlc.to_packed().to_be_bytes());
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(body);
    let tag = key.mac.clone().chain_update(&out).finalize().into_bytes();
    out.extend_from_slice(&tag);
    Ok(out)
}

pub(super) fn open(bytes: &[u8], key: &VenueKey, limits: Limits) -> Result<Envelope, EnvelopeError> {
    // Cheap checks that need no trust in the content.
    match bytes.first() {
        None => return Err(EnvelopeError::Truncated),
        Some(&v) if v != VERSION => return Err(EnvelopeError::BadVersion(v)),
        Some(_) => {}
    }
    if bytes.len() < MIN_LEN {
        return Err(EnvelopeError::Truncated);
    }
    let max = limits.max_envelope();
    if bytes.len() > max {
        return Err(EnvelopeError::TooLarge { len: bytes.len(), max });
    }
    if bytes[KEY_ID_AT] != key.key_id {
        return Err(EnvelopeError::UnknownKeyId(bytes[KEY_ID_AT]));
    }
    // Authenticate before parsing anything else (constant-time compare).
    let (signed, tag) = bytes.split_at(bytes.len() - TAG_LEN);
    key.mac.clone().chain_update(signed).verify_slice(tag).map_err(|_| EnvelopeError::BadSignature)?;

    let mut r = Reader { rest: &signed[KEY_ID_AT + 1..] };
    let kind = Kind::from_code(signed[1]);
    let venue = r.id(Field::Venue)?;
    let sender = r.id(Field::Sender)?;
    let counter = r.u64()?;
    let term = r.u64()?;
    let hlc = Hlc::from_packed(r.u64()?);
    let body_len = r.u32()? as usize;
    if body_len > limits.max_body {
        return Err(EnvelopeError::TooLarge { len: body_len, max: limits.max_body });
    }
    if r.rest.len() != body_len {
        return Err(EnvelopeError::BadField(Field::BodyLength));
    }
    if venue != key.venue {
        return Err(EnvelopeError::WrongVenue);
    }
    let header = Header { kind, sender: sender.to_string(), counter, term, hlc };
    Ok(Envelope { header, body: r.rest.to_vec() })
}

/// Bounds-checked reading of the authenticated prefix.
struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], EnvelopeError> {
        if self.rest.len() < n {
            return Err(EnvelopeError::Truncated);
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], EnvelopeError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    fn u64(&mut self) -> Result<u64, EnvelopeError> {
        self.array().map(u64::from_be_bytes)
    }

    fn u32(&mut self) -> Result<u32, EnvelopeError> {
        self.array().map(u32::from_be_bytes)
    }

    fn id(&mut self, field: Field) -> Result<&'a str, EnvelopeError> {
        let len = self.take(1)?[0] as usize;
        let raw = self.take(len)?;
        match core::str::from_utf8(raw) {
            Ok(id) if is_valid_id(id) => Ok(id),
            _ => Err(EnvelopeError::BadField(field)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{MessageId, FIXED_OVERHEAD};
    use super::*;
    use proptest::prelude::*;

    const SECRET: &[u8] = b"venuemesh-test-secret-0123456789";

    fn key() -> VenueKey {
        VenueKey::new("demo-venue", 1, SECRET).unwrap()
    }

    fn header() -> Header {
        Header {
            kind: Kind::Heartbeat,
            sender: "pos-1".into(),
            counter: 42,
            term: 7,
            hlc: Hlc::new(1_769_508_000_000, 3).unwrap(),
        }
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The test vector printed in PROTOCOL.md (Part 2). If this fails,
    /// the wire format changed: bump VERSION and update the document.
    #[test]
    fn documented_test_vector() {
        let sealed = Envelope::seal(&header(), b"hello", &key()).unwrap();
        assert_eq!(
            hex(&sealed),
            concat!(
                "010101", "0a", "64656d6f2d76656e7565", "05", "706f732d31",
                "000000000000002a", "0000000000000007", "019bfee551000003", "00000005", "68656c6c6f",
                "c96281b89665a998f9748bd97a04ae3af19ec1b33de1c76981c04dc1ebf5015f",
            )
        );
        assert_eq!(sealed.len(), FIXED_OVERHEAD + 10 + 5 + 5);
    }

    #[test]
    fn round_trip() {
        let sealed = Envelope::seal(&header(), b"hello", &key()).unwrap();
        let env = Envelope::open(&sealed, &key()).unwrap();
        assert_eq!(env.header, header());
        assert_eq!(env.body, b"hello");
        assert_eq!(env.id(), MessageId { sender: "pos-1".into(), counter: 42 });
        let empty = Envelope::seal(&header(), b"", &key()).unwrap();
        assert_eq!(empty.len(), MIN_LEN + 13);
        assert_eq!(Envelope::open(&empty, &key()).unwrap().body, b"");
    }

    #[test]
    fn wrong_key_venue_and_key_id() {
        let sealed = Envelope::seal(&header(), b"x", &key()).unwrap();
        let other_secret = VenueKey::new("demo-venue", 1, b"another-secret-of-32-bytes-long!").unwrap();
        assert_eq!(Envelope::open(&sealed, &other_secret), Err(EnvelopeError::BadSignature));
        let other_venue = VenueKey::new("other-venue", 1, SECRET).unwrap();
        assert_eq!(Envelope::open(&sealed, &other_venue), Err(EnvelopeError::WrongVenue));
        let rotated = VenueKey::new("demo-venue", 2, SECRET).unwrap();
        assert_eq!(Envelope::open(&sealed, &rotated), Err(EnvelopeError::UnknownKeyId(1)));
    }

    #[test]
    fn bad_keys_and_headers_are_refused_at_seal() {
        assert_eq!(VenueKey::new("a/b", 0, SECRET).unwrap_err(), EnvelopeError::BadField(Field::Venue));
        assert_eq!(VenueKey::new("v", 0, &SECRET[..15]).unwrap_err(), EnvelopeError::BadField(Field::Secret));
        assert!(!format!("{:?}", key()).contains("secret"));
        let bad = Header { sender: "no:colons".into(), ..header() };
        assert_eq!(Envelope::seal(&bad, b"", &key()), Err(EnvelopeError::BadField(Field::Sender)));
        let limits = Limits { max_body: 4 };
        assert_eq!(
            Envelope::seal_with(&header(), b"hello", &key(), limits),
            Err(EnvelopeError::TooLarge { len: 5, max: 4 })
        );
    }

    #[test]
    fn size_limits_on_open() {
        let sealed = Envelope::seal(&header(), &[7u8; 100], &key()).unwrap();
        let tight = Limits { max_body: 99 };
        // 100 + 5-byte sender + 10-byte venue fits the whole-envelope bound
        // (which allows two 64-byte ids), so the body bound catches it.
        assert_eq!(Envelope::open_with(&sealed, &key(), tight), Err(EnvelopeError::TooLarge { len: 100, max: 99 }));
        let tiny = Limits { max_body: 0 };
        let big = Envelope::seal(&header(), &[0u8; 200], &key()).unwrap();
        assert!(matches!(Envelope::open_with(&big, &key(), tiny), Err(EnvelopeError::TooLarge { .. })));
        assert_eq!(Envelope::open_with(&sealed, &key(), Limits { max_body: 100 }).unwrap().body.len(), 100);
    }

    #[test]
    fn short_inputs() {
        assert_eq!(Envelope::open(&[], &key()), Err(EnvelopeError::Truncated));
        assert_eq!(Envelope::open(&[2], &key()), Err(EnvelopeError::BadVersion(2)));
        assert_eq!(Envelope::open(&[1, 1, 1], &key()), Err(EnvelopeError::Truncated));
    }

    /// A key holder that writes garbage in the signed part gets decode errors.
    #[test]
    fn signed_but_malformed() {
        let k = key();
        let sign = |mut prefix: Vec<u8>| {
            let tag = k.mac.clone().chain_update(&prefix).finalize().into_bytes();
            prefix.extend_from_slice(&tag);
            prefix
        };
        let good = Envelope::seal(&header(), b"hello", &k).unwrap();
        let prefix = good[..good.len() - TAG_LEN].to_vec();
        let mut long_body = prefix.clone();
        long_body.push(0);
        assert_eq!(Envelope::open(&sign(long_body), &k), Err(EnvelopeError::BadField(Field::BodyLength)));
        let mut bad_sender = prefix.clone();
        bad_sender[15] = b'/';
        assert_eq!(Envelope::open(&sign(bad_sender), &k), Err(EnvelopeError::BadField(Field::Sender)));
        let mut zero_venue = prefix.clone();
        zero_venue[3] = 0;
        assert_eq!(Envelope::open(&sign(zero_venue), &k), Err(EnvelopeError::BadField(Field::Venue)));
        let mut huge_len = prefix.clone();
        huge_len[14] = 200;
        assert_eq!(Envelope::open(&sign(huge_len), &k), Err(EnvelopeError::Truncated));
        let mut unknown_kind = prefix;
        unknown_kind[1] = 99;
        assert_eq!(Envelope::open(&sign(unknown_kind), &k).unwrap().header.kind, Kind::Unknown(99));
    }

    fn any_header() -> impl Strategy<Value = Header> {
        (any::<u8>(), "[A-Za-z0-9._-]{1,64}", any::<u64>(), any::<u64>(), any::<u64>()).prop_map(
            |(kind, sender, counter, term, hlc)| Header {
                kind: Kind::from_code(kind),
                sender,
                counter,
                term,
                hlc: Hlc::from_packed(hlc),
            },
        )
    }

    proptest! {
        #[test]
        fn any_header_round_trips(h in any_header(), body in proptest::collection::vec(any::<u8>(), 0..300)) {
            let sealed = Envelope::seal(&h, &body, &key()).unwrap();
            let env = Envelope::open(&sealed, &key()).unwrap();
            prop_assert_eq!(env.header, h);
            prop_assert_eq!(env.body, body);
        }

        #[test]
        fn any_flipped_bit_is_rejected(h in any_header(), body in proptest::collection::vec(any::<u8>(), 0..64), bit in any::<usize>()) {
            let mut sealed = Envelope::seal(&h, &body, &key()).unwrap();
            let bit = bit % (sealed.len() * 8);
            sealed[bit / 8] ^= 1 << (bit % 8);
            let err = Envelope::open(&sealed, &key()).unwrap_err();
            prop_assert!(matches!(err, EnvelopeError::BadSignature | EnvelopeError::BadVersion(_) | EnvelopeError::UnknownKeyId(_)), "{err:?}");
        }

        #[test]
        fn any_truncation_or_extension_is_rejected(h in any_header(), body in proptest::collection::vec(any::<u8>(), 0..64), cut in any::<usize>(), extra in proptest::collection::vec(any::<u8>(), 1..40)) {
            let sealed = Envelope::seal(&h, &body, &key()).unwrap();
            let cut = cut % sealed.len();
            prop_assert!(Envelope::open(&sealed[..cut], &key()).is_err());
            let mut longer = sealed.clone();
            longer.extend_from_slice(&extra);
            prop_assert!(Envelope::open(&longer, &key()).is_err());
        }

        #[test]
        fn random_bytes_never_panic_or_verify(bytes in proptest::collection::vec(any::<u8>(), 0..400), version_one in any::<bool>()) {
            let mut bytes = bytes;
            if version_one && !bytes.is_empty() {
                bytes[0] = VERSION;
                if bytes.len() > KEY_ID_AT { bytes[KEY_ID_AT] = 1; }
            }
            prop_assert!(Envelope::open(&bytes, &key()).is_err());
        }
    }
}
