// The wire of the load test's simulated devices (tests/bench/brokers*.mjs), in
// one place: a follower's HEARTBEAT envelope (PROTOCOL.md Part 3 §3.3 body,
// Part 2 envelope v2 through tests/ca/trust.mjs: signed with the device's own
// Ed25519 key, its certificate chain attached, body encrypted with the venue's
// content key) and opening one the way a device does (chain to the venue root,
// signature, venue, decrypt).
//
// Every venue's CA is the deterministic test CA (`demoCa(venue)`), so each
// worker thread derives the same root and content key without talking to the
// others. The chain is attached to every heartbeat, as a device does
// (src/envelope/codec.rs `SealOpts::for_kind`: PRESENCE, HUB_CLAIM, HEARTBEAT):
// 263 bytes per heartbeat instead of v1's ≈ 90.
//
// A receiver must verify each envelope; the simulated devices of one worker
// thread receive the same bytes, so the verdict is computed once per distinct
// envelope per thread (`verified`) — as each real device, on its own CPU, does
// once — and the thread's CPU goes to MQTT, not to N identical verifications.
import * as T from '../ca/trust.mjs';

/** Body type 1, no flags, score 1,000,000 milli-points, queue depth 0. */
const HB_BODY = Buffer.from('01' + '00' + '000f4240' + '0000000000000000', 'hex');

/** A fresh per-sender counter (PROTOCOL.md Part 2 §5). */
export const counterFloor = T.counterFloor;

const cas = new Map(); // venue → { ca, trust }
function venueOf(venue) {
  let v = cas.get(venue);
  if (!v) {
    const ca = T.demoCa(venue);
    v = { ca, trust: { rootPk: ca.root.pk, venue, contentKeys: new Map(ca.keys.map((k) => [k.epoch, k.key])), certs: new Map(), revoked: new Set() } };
    cas.set(venue, v);
  }
  return v;
}
const devices = new Map(); // `${venue}/${sender}` → { key, chain }
function deviceOf(venue, sender) {
  const k = `${venue}/${sender}`;
  let d = devices.get(k);
  if (!d) { d = venueOf(venue).ca.device(sender); devices.set(k, d); }
  return d;
}

/** A signed heartbeat of `sender` in `venue`, stamped now. */
export function heartbeat(venue, sender, counter) {
  const { ca } = venueOf(venue), d = deviceOf(venue, sender);
  return T.seal({ key: d.key, venue, sender, kind: T.KIND.HEARTBEAT, counter, hlc: T.packHlc(Date.now()), body: HB_BODY,
    chain: d.chain, contentKey: ca.keys[0].key, epoch: ca.keys[0].epoch });
}

const verified = new Map(); // venue + the whole envelope → opened envelope or the TrustError, per thread, bounded
/** Opens (verifies) an envelope of `venue`: `{ sender, counter, sentAt }` (sentAt = HLC wall ms); throws when it is not valid. */
export function openHeartbeat(payload, venue) {
  // Keyed by every byte (not the signature alone: a tampered copy must not hit a good verdict).
  const sig = `${venue}\0${Buffer.from(payload).toString('latin1')}`;
  let r = verified.get(sig);
  if (r === undefined) {
    try { r = T.open(payload, venueOf(venue).trust); } catch (e) { r = e instanceof Error ? e : new Error(String(e)); }
    if (verified.size >= 50_000) verified.clear();
    verified.set(sig, r);
  }
  if (r instanceof Error) throw r;
  if (r.venue !== venue || r.kind !== T.KIND.HEARTBEAT) throw new Error('not a heartbeat of this venue');
  return { sender: r.sender, counter: r.counter, sentAt: Number(r.hlc >> 16n) };
}
