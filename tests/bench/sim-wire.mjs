// The wire of the load test's simulated devices (tests/bench/brokers*.mjs), in
// one place: a follower's HEARTBEAT envelope (PROTOCOL.md Part 3 §3.3 body,
// Part 2 envelope through tests/ingest/envelope.mjs) and opening one. When the
// envelope moves to v2 (Ed25519 device keys), only this file and envelope.mjs change.
import * as E from '../ingest/envelope.mjs';

export const SECRET = 'bench-venue-key-0123456789';

/** Body type 1, no flags, score 1,000,000 milli-points, queue depth 0. */
const HB_BODY = Buffer.from('01' + '00' + '000f4240' + '0000000000000000', 'hex');

/** A fresh per-sender counter (PROTOCOL.md Part 2 §5). */
export const counterFloor = E.counterFloor;

/** A signed heartbeat of `sender` in `venue`, stamped now. */
export const heartbeat = (venue, sender, counter) =>
  E.seal({ secret: SECRET, venue, sender, kind: E.KIND.HEARTBEAT, counter, hlc: E.packHlc(Date.now()), body: HB_BODY });

/** Opens (verifies) an envelope of `venue`: `{ sender, counter, sentAt }` (sentAt = HLC wall ms); throws when it is not valid. */
export function openHeartbeat(payload, venue) {
  const env = E.open(payload, { secret: SECRET, venue });
  return { sender: env.sender, counter: env.counter, sentAt: Number(env.hlc >> 16n) };
}
