//! Origin signatures and digests of commands (`PROTOCOL.md` Part 4 §2).
//!
//! The origin device signs each command it enqueues:
//! `origin_sig = Ed25519(origin key, "venuemesh/v2 cmd\0" ‖ venue id ‖ fields)`
//! where `fields` is the command's encoding in a Replicate or Upload body
//! without the signature. The signature travels with the command to every
//! replica, the hub and the ingest, so none of them can invent or alter a
//! command in an origin's name. The digest, SHA-256(fields ‖ origin_sig),
//! is what a cloud receipt names.

use super::codec::put_id;
use super::{domain, sha256, sign, verify, SigningKey, VerifyingKey, SIG_LEN};

fn venue_prefix(venue: &str) -> Vec<u8> {
    let mut v = Vec::with_capacity(65);
    // An invalid venue id never reaches here (config validation); if it
    // did, the signature would simply not verify anywhere.
    let _ = put_id(&mut v, venue);
    v
}

/// Signs a command's field encoding.
pub fn sign_command(key: &SigningKey, venue: &str, fields: &[u8]) -> [u8; SIG_LEN] {
    sign(key, domain::COMMAND, &[&venue_prefix(venue), fields])
}

/// Checks an origin signature.
pub fn verify_command(origin: &VerifyingKey, venue: &str, fields: &[u8], sig: &[u8; SIG_LEN]) -> bool {
    verify(origin, domain::COMMAND, &[&venue_prefix(venue), fields], sig)
}

/// The command digest a receipt names: SHA-256(fields ‖ origin_sig).
pub fn digest(fields: &[u8], sig: &[u8; SIG_LEN]) -> [u8; 32] {
    sha256(&[fields, sig])
}
