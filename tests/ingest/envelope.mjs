// The venuemesh envelope (PROTOCOL.md Part 2) and the upload / cloud-ack
// bodies (src/replication/wire.rs) in plain Node (node:crypto), for tests that
// talk to the mesh or the ingest without a browser. Counters, term and HLC are
// BigInts; ids and topics are strings; payloads and bodies are Buffers.
import { createHmac, timingSafeEqual } from 'node:crypto';

export const KIND = { HEARTBEAT: 1, HUB_CLAIM: 2, PRESENCE: 3, REPLICATE_COMMAND: 4, SYNC_ACK: 5, CLOUD_ACK: 6, UPLOAD: 12 };
export const TYPE = { REPLICATE: 0x10, SYNC_ACK: 0x11, CLOUD_ACK: 0x12, UPLOAD: 0x13 };
const ID = /^[A-Za-z0-9._-]{1,64}$/;
const u16 = (n) => { const b = Buffer.alloc(2); b.writeUInt16BE(n); return b; };
const u32 = (n) => { const b = Buffer.alloc(4); b.writeUInt32BE(n); return b; };
const u64 = (n) => { const b = Buffer.alloc(8); b.writeBigUInt64BE(BigInt(n)); return b; };
const key = (k) => (typeof k === 'string' ? Buffer.from(k, 'utf8') : Buffer.from(k));

/** `wall_ms << 16 | logical` (Part 2 §7). */
export const packHlc = (wallMs, logical = 0) => (BigInt(wallMs) << 16n) | BigInt(logical);

/** A fresh sender counter floor: `Date.now() × 1024` (Part 2 §5). */
export const counterFloor = () => BigInt(Date.now()) * 1024n;

/** Signs one envelope. */
export function seal({ secret, keyId = 1, venue, sender, kind, counter, term = 0n, hlc = packHlc(Date.now()), body }) {
  if (!ID.test(venue) || !ID.test(sender)) throw new Error('venue and sender must be ids');
  const v = Buffer.from(venue), s = Buffer.from(sender), b = Buffer.from(body);
  const msg = Buffer.concat([Buffer.from([1, kind, keyId, v.length]), v, Buffer.from([s.length]), s,
    u64(counter), u64(term), u64(hlc), u32(b.length), b]);
  return Buffer.concat([msg, createHmac('sha256', key(secret)).update(msg).digest()]);
}

/** Opens an envelope in the order of Part 2 §1; throws Error(reason). */
export function open(bytes, { secret, keyId = 1, venue, maxBody = 262144 }) {
  const buf = Buffer.from(bytes);
  if (buf.length === 0) throw new Error('truncated');
  if (buf[0] !== 1) throw new Error('bad_version');
  if (buf.length < 67) throw new Error('truncated');
  if (buf.length > 65 + 128 + maxBody) throw new Error('too_large');
  if (buf[2] !== keyId) throw new Error('unknown_key');
  const signed = buf.subarray(0, buf.length - 32);
  const tag = createHmac('sha256', key(secret)).update(signed).digest();
  if (!timingSafeEqual(tag, buf.subarray(buf.length - 32))) throw new Error('bad_signature');
  const r = reader(signed, 3);
  const ven = r.id(), sender = r.id();
  const counter = r.u64(), term = r.u64(), hlc = r.u64(), len = r.u32();
  if (len > maxBody || r.left() !== len) throw new Error('malformed');
  if (ven !== venue) throw new Error('wrong_venue');
  return { kind: buf[1], keyId: buf[2], venue: ven, sender, counter, term, hlc, body: r.take(len) };
}

function reader(buf, at = 0) {
  const take = (n) => {
    if (buf.length - at < n) throw new Error('truncated');
    at += n;
    return buf.subarray(at - n, at);
  };
  const r = {
    take, left: () => buf.length - at,
    u8: () => take(1)[0], u16: () => take(2).readUInt16BE(), u32: () => take(4).readUInt32BE(),
    u64: () => take(8).readBigUInt64BE(),
    id: () => { const s = take(r.u8()).toString('latin1'); if (!ID.test(s)) throw new Error('bad_id'); return s; },
    text: (max) => { const n = r.u16(); if (n === 0 || n > max) throw new Error('bad_field'); return take(n).toString('utf8'); },
  };
  return r;
}

const text = (s) => { const b = Buffer.from(s, 'utf8'); return Buffer.concat([u16(b.length), b]); };

/** 0x13 Upload body: `cmds` = [{ id, origin, topic, hlc, createdAt, payload }]. */
export function encodeUpload(batch, cmds) {
  const parts = [Buffer.from([TYPE.UPLOAD]), u64(batch), u16(cmds.length)];
  for (const c of cmds) {
    const o = Buffer.from(c.origin), p = Buffer.from(c.payload ?? []);
    parts.push(text(c.id), Buffer.from([o.length]), o, text(c.topic), u64(c.hlc ?? 0n), u64(c.createdAt ?? Date.now()), u32(p.length), p);
  }
  return Buffer.concat(parts);
}

/** 0x12 CloudAck body. */
export const encodeCloudAck = (ids) => Buffer.concat([Buffer.from([TYPE.CLOUD_ACK]), u16(ids.length), ...ids.map(text)]);

/** 0x12 CloudAck body → ids (throws on anything else). */
export function decodeCloudAck(body) {
  const r = reader(Buffer.from(body));
  if (r.u8() !== TYPE.CLOUD_ACK) throw new Error('not a cloud ack');
  const n = r.u16();
  if (n === 0) throw new Error('bad_field');
  return Array.from({ length: n }, () => r.text(128));
}
