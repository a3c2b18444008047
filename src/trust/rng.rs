//! A cryptographically secure generator for the core: the ChaCha20
//! keystream under a 32-byte seed. The shell seeds it from
//! `crypto.getRandomValues`, the simulator from its run seed. Unlike
//! [`crate::rng::Rng`] (jitter), what it draws may be secret or must be
//! unpredictable: command ids, pairing codes, nonces.

use chacha20::cipher::{KeyIvInit, StreamCipher};
use chacha20::ChaCha20;

/// ChaCha20 as a random byte stream (a key never reused: one seed, one
/// stream, 2^64 blocks before the 64-bit counter would wrap).
pub struct CryptoRng {
    cipher: ChaCha20,
}

impl CryptoRng {
    /// A generator whose whole output is fixed by `seed` (32 bytes from a
    /// CSPRNG in production).
    pub fn new(seed: [u8; 32]) -> CryptoRng {
        CryptoRng { cipher: ChaCha20::new(&seed.into(), &[0u8; 12].into()) }
    }

    /// Fill `out` with random bytes.
    pub fn fill(&mut self, out: &mut [u8]) {
        out.fill(0);
        self.cipher.apply_keystream(out);
    }

    /// `N` random bytes.
    pub fn bytes<const N: usize>(&mut self) -> [u8; N] {
        let mut b = [0u8; N];
        self.fill(&mut b);
        b
    }
}

impl core::fmt::Debug for CryptoRng {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("CryptoRng(..)")
    }
}

/// RFC 4648 base32 alphabet, lower case (command ids) — upper case for
/// pairing codes.
pub(crate) const BASE32: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

/// `bytes` as base32 (no padding), lower case.
pub(crate) fn base32(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 8 / 5 + 1);
    let (mut acc, mut bits) = (0u32, 0u32);
    for &b in bytes {
        acc = (acc << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(BASE32[(acc >> bits) as usize & 31] as char);
        }
        acc &= (1 << bits) - 1;
    }
    if bits > 0 {
        out.push(BASE32[(acc << (5 - bits)) as usize & 31] as char);
    }
    out
}

/// A new command id: `{origin}.{26 base32 chars}` = 128 random bits from
/// `rng`. Nothing in it follows from earlier ids (the v1 ids were
/// `{device}-{nonce}-{n}`, so the next ones could be pre-empted).
pub fn command_id(origin: &str, rng: &mut CryptoRng) -> String {
    let b: [u8; 16] = rng.bytes();
    format!("{origin}.{}", base32(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keystream_is_rfc8439_chacha20_and_ids_differ() {
        // RFC 8439 §2.4.2 uses another nonce; with key 0 and nonce 0 the
        // first keystream bytes are the well-known 76b8e0ad a0f13d90 …
        let mut r = CryptoRng::new([0u8; 32]);
        let b: [u8; 8] = r.bytes();
        assert_eq!(b, [0x76, 0xb8, 0xe0, 0xad, 0xa0, 0xf1, 0x3d, 0x90]);
        let mut r = CryptoRng::new([7u8; 32]);
        let a = command_id("pos-1", &mut r);
        let b = command_id("pos-1", &mut r);
        assert_ne!(a, b);
        assert_eq!(a.len(), "pos-1.".len() + 26);
        assert!(a[6..].bytes().all(|c| BASE32.contains(&c)));
        assert_eq!(base32(&[0xff]), "74");
        assert_eq!(base32(b"foobar"), "mzxw6ytboi");
    }
}
