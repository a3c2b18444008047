// The venuemesh v2 trust formats (PROTOCOL.md Part 6, /work/specs design §1-§5) in plain
// Node (node:crypto only): Ed25519 keys and certificates, chains, CRLs, cloud receipts,
// origin-signed commands, the v2 envelope (signed, optionally encrypted with
// ChaCha20-Poly1305 under a per-sender HKDF subkey) and the credential bundle.
// The Node test CA (scripts/ca.mjs) and the e2e tests use it; nothing here comes from the
// Rust code, so it doubles as a second implementation checked against
// tests/vectors/protocol-v2.json. Bytes are Buffers, u64 fields BigInts.
import { createHash, createPrivateKey, createPublicKey, sign as edSign, verify as edVerify, randomBytes,
  hkdfSync, createCipheriv, createDecipheriv, createHmac, timingSafeEqual } from 'node:crypto';

export const ROLE = { device: 1, admin: 2, cloud: 3 };
export const ROLE_NAME = { 1: 'device', 2: 'admin', 3: 'cloud' };
export const KIND = { HEARTBEAT: 1, HUB_CLAIM: 2, PRESENCE: 3, REPLICATE_COMMAND: 4, SYNC_ACK: 5, CLOUD_ACK: 6,
  UPLOAD: 12, TRUST: 13 };
export const TYPE = { REPLICATE: 0x10, SYNC_ACK: 0x11, CLOUD_ACK: 0x12, UPLOAD: 0x13, CRL: 0x40, KEY_UPDATE: 0x41,
  PAIR_REQUEST: 0x42, PAIR_RESPONSE: 0x43 };
export const FLAG = { ENCRYPTED: 0x01, CHAIN: 0x02 };
export const CTX = { cert: 'venuemesh/v2 cert\0', env: 'venuemesh/v2 env\0', cmd: 'venuemesh/v2 cmd\0',
  receipt: 'venuemesh/v2 receipt\0', crl: 'venuemesh/v2 crl\0' };
export const MAX_BODY = 262144;
/** Allowed clock drift when checking validity windows (ms). */
export const DRIFT_MS = 60_000;
const ID = /^[A-Za-z0-9._-]{1,64}$/;

/** An error with a machine-readable reason (the drop counter name). */
export class TrustError extends Error {
  constructor(reason, detail) { super(detail ? `${reason}: ${detail}` : reason); this.reason = reason; }
}
const fail = (reason, detail) => { throw new TrustError(reason, detail); };

// --- integers, ids, readers ------------------------------------------------------------
const u8 = (n) => Buffer.from([n]);
const u16 = (n) => { const b = Buffer.alloc(2); b.writeUInt16BE(n); return b; };
const u32 = (n) => { const b = Buffer.alloc(4); b.writeUInt32BE(n); return b; };
const u64 = (n) => { const b = Buffer.alloc(8); b.writeBigUInt64BE(BigInt(n)); return b; };
export const id = (s) => {
  if (!ID.test(s)) throw new TypeError(`not an id: ${JSON.stringify(s)}`);
  return Buffer.concat([u8(s.length), Buffer.from(s, 'latin1')]);
};
const text16 = (s) => { const b = Buffer.from(s, 'utf8'); return Buffer.concat([u16(b.length), b]); };

/** Bounds-checked big-endian reads; any failure throws TrustError(reason). */
export function reader(buf, reason = 'malformed', at = 0) {
  buf = Buffer.from(buf);
  const take = (n) => { if (buf.length - at < n) fail(reason, 'truncated'); at += n; return buf.subarray(at - n, at); };
  const r = {
    take, left: () => buf.length - at, get at() { return at; },
    u8: () => take(1)[0], u16: () => take(2).readUInt16BE(), u32: () => take(4).readUInt32BE(),
    u64: () => take(8).readBigUInt64BE(),
    id: () => { const s = take(r.u8()).toString('latin1'); if (!ID.test(s)) fail(reason, 'bad id'); return s; },
    text: (max) => {
      const n = r.u16(); if (n === 0 || n > max) fail(reason, 'bad text');
      const b = take(n); const s = b.toString('utf8');
      if (!Buffer.from(s, 'utf8').equals(b)) fail(reason, 'bad utf-8');
      return s;
    },
    end: () => { if (at !== buf.length) fail(reason, 'trailing bytes'); },
  };
  return r;
}

// --- keys ---------------------------------------------------------------------------------
const PKCS8_ED25519 = Buffer.from('302e020100300506032b657004220420', 'hex');
const SPKI_ED25519 = Buffer.from('302a300506032b6570032100', 'hex');

/** An Ed25519 key from its 32-byte seed (random when omitted): `{ seed, pk, sign(msg) }`. */
export function keyPair(seed = randomBytes(32)) {
  seed = Buffer.from(seed);
  if (seed.length !== 32) throw new TypeError('an Ed25519 seed is 32 bytes');
  const priv = createPrivateKey({ key: Buffer.concat([PKCS8_ED25519, seed]), format: 'der', type: 'pkcs8' });
  const pk = createPublicKey(priv).export({ format: 'der', type: 'spki' }).subarray(12);
  return { seed, pk: Buffer.from(pk), fp: fp(pk), sign: (msg) => edSign(null, Buffer.from(msg), priv) };
}

/** Ed25519 verification of `sig` over `msg` by the raw 32-byte public key `pk`. */
export function verifySig(pk, msg, sig) {
  if (pk.length !== 32 || sig.length !== 64) return false;
  try {
    const key = createPublicKey({ key: Buffer.concat([SPKI_ED25519, pk]), format: 'der', type: 'spki' });
    return edVerify(null, Buffer.from(msg), key, Buffer.from(sig));
  } catch { return false; }
}

export const sha256 = (...parts) => { const h = createHash('sha256'); for (const p of parts) h.update(p); return h.digest(); };
/** Key fingerprint: the first 8 bytes of SHA-256(pk). */
export const fp = (pk) => sha256(pk).subarray(0, 8);

// --- certificates and chains (§1) ------------------------------------------------------------
/**
 * Issues a certificate: `issuer` is a keyPair (root or admin), the fields are
 * `{ role, venue, subject, pk, notBefore, notAfter }` (ms; notAfter 0 = none).
 */
export function issueCert(issuer, { role, venue, subject, pk, notBefore = 0, notAfter = 0 }) {
  const roleNum = typeof role === 'string' ? ROLE[role] : role;
  if (![1, 2, 3].includes(roleNum)) throw new TypeError(`unknown role ${role}`);
  const tbs = Buffer.concat([u8(1), u8(roleNum), id(venue), id(subject), Buffer.from(pk), issuer.fp,
    u64(notBefore), u64(notAfter)]);
  if (tbs.length + 64 > 256) throw new TypeError('certificate longer than 256 bytes');
  return Buffer.concat([tbs, issuer.sign(Buffer.concat([Buffer.from(CTX.cert), tbs]))]);
}

export function decodeCert(bytes) {
  const buf = Buffer.from(bytes);
  if (buf.length > 256) fail('bad_chain', 'certificate too long');
  const r = reader(buf, 'bad_chain');
  if (r.u8() !== 1) fail('bad_chain', 'certificate version');
  const role = r.u8();
  if (![1, 2, 3].includes(role)) fail('bad_chain', 'unknown role');
  const cert = { role, venue: r.id(), subject: r.id(), pk: Buffer.from(r.take(32)), issuerFp: Buffer.from(r.take(8)),
    notBefore: r.u64(), notAfter: r.u64() };
  cert.tbs = buf.subarray(0, r.at);
  cert.sig = Buffer.from(r.take(64));
  r.end();
  cert.bytes = buf;
  return cert;
}

/** `count u8 (1..=2) · (u16 len · cert)×count`, leaf first. */
export const encodeChain = (certs) => {
  if (certs.length < 1 || certs.length > 2) throw new TypeError('a chain holds 1 or 2 certificates');
  return Buffer.concat([u8(certs.length), ...certs.flatMap((c) => [u16(c.length), Buffer.from(c)])]);
};

/** Reads one chain from reader `r` (certs decoded, not yet verified). */
export function readChain(r) {
  const n = r.u8();
  if (n < 1 || n > 2) fail('bad_chain', 'chain length');
  return Array.from({ length: n }, () => decodeCert(r.take(r.u16())));
}
export const decodeChain = (bytes) => { const r = reader(bytes, 'bad_chain'); const c = readChain(r); r.end(); return c; };

/**
 * Validates a decoded chain (leaf first) against the venue root: signatures up to
 * `rootPk`, one venue, role rules (an admin in between issues devices only), validity
 * windows against `now` (± `drift`), no key revoked (`revoked`: Set of fp hex).
 * Returns the leaf. Throws TrustError('bad_chain' | 'revoked').
 */
export function verifyChain(chain, { rootPk, venue, now = Date.now(), drift = DRIFT_MS, revoked = new Set() }) {
  const rootFp = fp(rootPk);
  const t = BigInt(now), d = BigInt(drift);
  for (const c of chain) {
    if (c.venue !== venue) fail('bad_chain', 'venue');
    if (c.notBefore > t + d) fail('bad_chain', 'not yet valid');
    if (c.notAfter !== 0n && c.notAfter + d < t) fail('bad_chain', 'expired');
  }
  for (const c of chain) if (revoked.has(fp(c.pk).toString('hex'))) fail('revoked');
  if (chain.length === 2) {
    const [leaf, admin] = chain;
    if (admin.role !== ROLE.admin) fail('bad_chain', 'intermediate is not an admin');
    if (leaf.role !== ROLE.device) fail('bad_chain', 'an admin issues device certificates only');
    if (!admin.issuerFp.equals(rootFp) || !verifySig(rootPk, Buffer.concat([Buffer.from(CTX.cert), admin.tbs]), admin.sig))
      fail('bad_chain', 'admin certificate not signed by the root');
    if (!leaf.issuerFp.equals(fp(admin.pk)) || !verifySig(admin.pk, Buffer.concat([Buffer.from(CTX.cert), leaf.tbs]), leaf.sig))
      fail('bad_chain', 'leaf not signed by the admin');
  } else {
    const [leaf] = chain;
    if (!leaf.issuerFp.equals(rootFp) || !verifySig(rootPk, Buffer.concat([Buffer.from(CTX.cert), leaf.tbs]), leaf.sig))
      fail('bad_chain', 'not signed by the root');
  }
  return chain[0];
}

// --- CRL (§4) ---------------------------------------------------------------------------
/** A CRL signed by `issuer` (keyPair); `issuerChain` = its chain bytes, or null when the root signs. */
export function makeCrl(issuer, { venue, seq, issuedAt = Date.now(), fps, issuerChain = null }) {
  const tbs = Buffer.concat([u8(1), id(venue), u64(seq), u64(issuedAt), u16(fps.length), ...fps.map((f) => Buffer.from(f)),
    issuerChain ? Buffer.from(issuerChain) : u8(0)]);
  return Buffer.concat([tbs, issuer.sign(Buffer.concat([Buffer.from(CTX.crl), tbs]))]);
}

/** Decodes and verifies a CRL (root or an admin of the venue); returns `{ seq, issuedAt, fps: [hex] }`. */
export function openCrl(bytes, { rootPk, venue, now = Date.now(), revoked = new Set() }) {
  const buf = Buffer.from(bytes);
  const r = reader(buf, 'bad_crl');
  if (r.u8() !== 1) fail('bad_crl', 'version');
  const ven = r.id(), seq = r.u64(), issuedAt = r.u64(), n = r.u16();
  const fps = Array.from({ length: n }, () => r.take(8).toString('hex'));
  let signer = rootPk;
  if (buf[r.at] === 0) r.take(1); // count 0: the root signed it
  else {
    const leaf = verifyChain(readChain(r), { rootPk, venue, now, revoked });
    if (leaf.role !== ROLE.admin) fail('wrong_role', 'a CRL is signed by an admin or the root');
    signer = leaf.pk;
  }
  const tbs = buf.subarray(0, r.at), sig = r.take(64);
  r.end();
  if (ven !== venue) fail('bad_crl', 'venue');
  if (!verifySig(signer, Buffer.concat([Buffer.from(CTX.crl), tbs]), sig)) fail('bad_crl', 'signature');
  return { seq, issuedAt, fps };
}

// --- commands, digests, receipts (§3) ----------------------------------------------------
/** The v1 command encoding (`src/replication/wire.rs`): `{ id, origin, topic, hlc, createdAt, payload }`. */
export function encodeCmd(c) {
  const p = Buffer.from(c.payload ?? []);
  return Buffer.concat([text16(c.id), id(c.origin), text16(c.topic), u64(c.hlc ?? 0n), u64(c.createdAt ?? 0),
    u32(p.length), p]);
}
/** origin_sig over `"venuemesh/v2 cmd\0" ‖ venue id ‖ command fields`. */
export const signCmd = (originKey, venue, c) => originKey.sign(Buffer.concat([Buffer.from(CTX.cmd), id(venue), encodeCmd(c)]));
export const verifyCmd = (pk, venue, c, sig) => verifySig(pk, Buffer.concat([Buffer.from(CTX.cmd), id(venue), encodeCmd(c)]), sig);
/** SHA-256 of the signed command encoding (fields ‖ origin_sig). */
export const cmdDigest = (c, sig) => sha256(encodeCmd(c), sig);

/** A 128-bit CSPRNG command id: `{origin}.{26 chars of base32 lower}`. */
export function newCommandId(origin) {
  const b = randomBytes(17); // 130 bits drawn, 128 used + 2 bits of padding
  const alphabet = 'abcdefghijklmnopqrstuvwxyz234567';
  let bits = 0n;
  for (const x of b.subarray(0, 16)) bits = (bits << 8n) | BigInt(x);
  bits <<= 2n;
  let s = '';
  for (let i = 25; i >= 0; i--) s += alphabet[Number((bits >> BigInt(i * 5)) & 31n)];
  return `${origin}.${s}`;
}

/** A receipt signed by the cloud key: `entries` = [{ id, digest }]. */
export function makeReceipt(cloudKey, { venue, issuedAt = Date.now(), entries, cloudChain }) {
  const tbs = Buffer.concat([u8(1), id(venue), u64(issuedAt), u16(entries.length),
    ...entries.flatMap((e) => [text16(e.id), Buffer.from(e.digest)]), Buffer.from(cloudChain)]);
  return Buffer.concat([tbs, cloudKey.sign(Buffer.concat([Buffer.from(CTX.receipt), tbs]))]);
}

/** Verifies a receipt (cloud role chain to the root); returns `{ issuedAt, entries: [{id, digest}] }`. */
export function openReceipt(bytes, { rootPk, venue, now = Date.now(), revoked = new Set() }) {
  const buf = Buffer.from(bytes);
  const r = reader(buf, 'bad_receipt');
  if (r.u8() !== 1) fail('bad_receipt', 'version');
  const ven = r.id(), issuedAt = r.u64(), n = r.u16();
  const entries = Array.from({ length: n }, () => ({ id: r.text(128), digest: Buffer.from(r.take(32)) }));
  let leaf;
  try { leaf = verifyChain(readChain(r), { rootPk, venue, now, revoked }); } catch (e) { fail('bad_receipt', e.message); }
  if (leaf.role !== ROLE.cloud) fail('bad_receipt', 'not a cloud certificate');
  const tbs = buf.subarray(0, r.at), sig = r.take(64);
  r.end();
  if (ven !== venue) fail('bad_receipt', 'venue');
  if (!verifySig(leaf.pk, Buffer.concat([Buffer.from(CTX.receipt), tbs]), sig)) fail('bad_receipt', 'signature');
  return { issuedAt, entries, signer: leaf.subject };
}

// --- body encryption (§2) ------------------------------------------------------------------
/** The per-sender body key: HKDF-SHA256(content key, salt "venuemesh/v2", info "body\0" ‖ sender). */
export const bodyKey = (contentKey, sender) =>
  Buffer.from(hkdfSync('sha256', Buffer.from(contentKey), Buffer.from('venuemesh/v2'),
    Buffer.concat([Buffer.from('body\0'), Buffer.from(sender, 'latin1')]), 32));
const nonceOf = (counter) => Buffer.concat([u64(counter), Buffer.alloc(4)]);

function seal20(key, counter, aad, plain) {
  const c = createCipheriv('chacha20-poly1305', key, nonceOf(counter), { authTagLength: 16 });
  c.setAAD(aad, { plaintextLength: plain.length });
  return Buffer.concat([c.update(plain), c.final(), c.getAuthTag()]);
}
function open20(key, counter, aad, sealed) {
  if (sealed.length < 16) fail('bad_body', 'shorter than the tag');
  const d = createDecipheriv('chacha20-poly1305', key, nonceOf(counter), { authTagLength: 16 });
  d.setAAD(aad, { plaintextLength: sealed.length - 16 });
  d.setAuthTag(sealed.subarray(sealed.length - 16));
  try { return Buffer.concat([d.update(sealed.subarray(0, sealed.length - 16)), d.final()]); } catch { fail('bad_body', 'tag'); }
}

// --- envelope v2 (§2) -----------------------------------------------------------------------
/**
 * Seals a v2 envelope: signed by `key` (keyPair of `sender`), the body encrypted with
 * `contentKey` of `epoch` unless `encrypt` is false, `chain` (bytes) attached when given.
 */
export function seal({ key, venue, sender, kind, counter, term = 0n, hlc = packHlc(Date.now()), body, chain = null,
  contentKey = null, epoch = 0, encrypt = contentKey !== null }) {
  const flags = (encrypt ? FLAG.ENCRYPTED : 0) | (chain ? FLAG.CHAIN : 0);
  const plain = Buffer.from(body);
  const bodyLen = plain.length + (encrypt ? 16 : 0);
  const head = Buffer.concat([u8(2), u8(kind), u8(flags), u8(epoch), id(venue), id(sender), u64(counter), u64(term),
    u64(hlc), chain ? Buffer.from(chain) : Buffer.alloc(0), u32(bodyLen)]);
  const b = encrypt ? seal20(bodyKey(contentKey, sender), counter, head, plain) : plain;
  const signed = Buffer.concat([head, b]);
  return Buffer.concat([signed, key.sign(Buffer.concat([Buffer.from(CTX.env), signed]))]);
}

/** Parses a v2 envelope's header without checking anything cryptographic. */
export function parseEnvelope(bytes, { maxBody = MAX_BODY } = {}) {
  const buf = Buffer.from(bytes);
  if (buf.length === 0) fail('truncated');
  if (buf[0] !== 2) fail('bad_version');
  if (buf.length < 100) fail('truncated');
  if (buf.length > 100 + 128 + 2 * 260 + 1 + maxBody + 16) fail('too_large');
  const r = reader(buf, 'malformed', 1);
  const kind = r.u8(), flags = r.u8(), epoch = r.u8();
  if (flags & ~3) fail('malformed', 'unknown flags');
  const venue = r.id(), sender = r.id(), counter = r.u64(), term = r.u64(), hlc = r.u64();
  let chain = null;
  if (flags & FLAG.CHAIN) {
    const from = r.at;
    const certs = readChain(r);
    chain = { certs, bytes: buf.subarray(from, r.at) };
  }
  const bodyLen = r.u32();
  if (bodyLen > maxBody + 16) fail('too_large');
  const header = buf.subarray(0, r.at);
  if (r.left() !== bodyLen + 64) fail('malformed', 'length');
  const body = r.take(bodyLen), sig = r.take(64);
  return { kind, flags, epoch, venue, sender, counter, term, hlc, chain, header, body, sig,
    signed: buf.subarray(0, buf.length - 64) };
}

/**
 * Opens a v2 envelope in the order of §2 (size → version → header → chain → signature →
 * venue → replay (`replay(sender, counter)` → 'accept' | reason) → decrypt → kind rules).
 * `trust` = `{ rootPk, venue, contentKeys: Map(epoch → key), certs: Map(sender → leaf), revoked }`.
 * A valid attached chain is cached in `trust.certs`. Throws TrustError(reason).
 */
export function open(bytes, trust, { replay = null, now = Date.now() } = {}) {
  const e = parseEnvelope(bytes);
  let leaf;
  if (e.chain) {
    leaf = verifyChain(e.chain.certs, { rootPk: trust.rootPk, venue: trust.venue, now, revoked: trust.revoked });
    if (leaf.subject !== e.sender) fail('bad_chain', 'the leaf is not the sender');
  } else {
    leaf = trust.certs?.get(e.sender);
    if (!leaf) fail('unknown_sender');
    if (trust.revoked?.has(fp(leaf.pk).toString('hex'))) fail('revoked');
  }
  if (!verifySig(leaf.pk, Buffer.concat([Buffer.from(CTX.env), e.signed]), e.sig)) fail('bad_signature');
  if (e.chain && trust.certs) trust.certs.set(e.sender, leaf);
  if (e.venue !== trust.venue) fail('wrong_venue');
  if (replay) { const v = replay(e.sender, e.counter); if (v !== 'accept') fail(v); }
  let body = Buffer.from(e.body);
  if (e.flags & FLAG.ENCRYPTED) {
    const ck = trust.contentKeys?.get(e.epoch);
    if (!ck) fail('bad_body', `no content key of epoch ${e.epoch}`);
    body = open20(bodyKey(ck, e.sender), e.counter, e.header, body);
  }
  if (e.kind === KIND.CLOUD_ACK && leaf.role !== ROLE.cloud) fail('wrong_role');
  return { ...e, body, role: leaf.role, leaf };
}

/** `wall_ms << 16 | logical`. */
export const packHlc = (wallMs, logical = 0) => (BigInt(wallMs) << 16n) | BigInt(logical);
/** A fresh sender counter floor: `Date.now() × 1024`. */
export const counterFloor = () => BigInt(Date.now()) * 1024n;

// --- bodies: replicate / upload / cloud ack (§3) ------------------------------------------
/** Cert table: `count u8 · chain×count`. */
export const encodeCertTable = (chains) => Buffer.concat([u8(chains.length), ...chains.map((c) => Buffer.from(c))]);

/** 0x13 Upload: `type · batch u64 · cert table · count u16 · (cmd · origin_sig)×count`; cmds carry `sig`. */
export function encodeUpload(batch, chains, cmds) {
  return Buffer.concat([u8(TYPE.UPLOAD), u64(batch), encodeCertTable(chains), u16(cmds.length),
    ...cmds.flatMap((c) => [encodeCmd(c), Buffer.from(c.sig)])]);
}
/** 0x10 Replicate: `type · cert table · count u16 · (cmd · origin_sig)×count`. */
export function encodeReplicate(chains, cmds) {
  return Buffer.concat([u8(TYPE.REPLICATE), encodeCertTable(chains), u16(cmds.length),
    ...cmds.flatMap((c) => [encodeCmd(c), Buffer.from(c.sig)])]);
}

function readCmd(r) {
  return { id: r.text(128), origin: r.id(), topic: r.text(256), hlc: r.u64(), createdAt: r.u64(),
    payload: Buffer.from(r.take(r.u32())), sig: Buffer.from(r.take(64)) };
}
/** Decodes an Upload body → `{ batch, chains: [[cert…]…], cmds }` (nothing verified). */
export function decodeUpload(body) {
  const r = reader(body, 'bad_body');
  if (r.u8() !== TYPE.UPLOAD) fail('kind_mismatch');
  const batch = r.u64();
  const chains = Array.from({ length: r.u8() }, () => readChain(r));
  const n = r.u16();
  if (n === 0) fail('bad_body', 'no command');
  return { batch, chains, cmds: Array.from({ length: n }, () => readCmd(r)) };
}

/** 0x12 CloudAck body: `type · receipt`. */
export const encodeCloudAck = (receipt) => Buffer.concat([u8(TYPE.CLOUD_ACK), Buffer.from(receipt)]);
export function decodeCloudAck(body) {
  const b = Buffer.from(body);
  if (b[0] !== TYPE.CLOUD_ACK) fail('kind_mismatch');
  return b.subarray(1);
}

// --- credential bundle (§5) -------------------------------------------------------------------
const b64 = (b) => Buffer.from(b).toString('base64');

/**
 * The JSON credential bundle a device opens the mesh with (PROTOCOL.md Part 6 §5; the
 * Rust `trust::Bundle::from_json` reads it): its private key is not in it.
 */
export function makeBundle({ venue, device, rootPk, chain, cloudChain, keys, crl = null }) {
  const { epoch, key } = keys.at(-1);
  return { version: 1, venue, device, rootPublicKey: b64(rootPk), chain: b64(chain), cloudChain: b64(cloudChain),
    keyEpoch: epoch, contentKey: b64(key), crl: crl ? b64(crl) : null };
}

/** Reads and checks a bundle: the chain must verify to its root and name `device`. */
export function readBundle(json, { now = Date.now() } = {}) {
  const j = typeof json === 'string' ? JSON.parse(json) : json;
  if (j.version !== 1) fail('bad_credentials', 'bundle version');
  const rootPk = Buffer.from(j.rootPublicKey, 'base64');
  if (rootPk.length !== 32) fail('bad_credentials', 'root key');
  const chain = Buffer.from(j.chain, 'base64');
  const leaf = verifyChain(decodeChain(chain), { rootPk, venue: j.venue, now });
  if (leaf.subject !== j.device) fail('bad_credentials', 'the certificate names another device');
  const cloudChain = Buffer.from(j.cloudChain, 'base64');
  const cloud = verifyChain(decodeChain(cloudChain), { rootPk, venue: j.venue, now });
  if (cloud.role !== ROLE.cloud) fail('bad_credentials', 'the cloud chain is not a cloud certificate');
  return { venue: j.venue, device: j.device, role: ROLE_NAME[leaf.role], rootPk, chain, leaf, cloudChain, cloud,
    contentKeys: new Map([[j.keyEpoch, Buffer.from(j.contentKey, 'base64')]]),
    crl: j.crl ? Buffer.from(j.crl, 'base64') : null };
}

// --- a CA in one object ----------------------------------------------------------------------
/**
 * A venue CA for tests and the demo: a root key, a cloud identity, content key epoch 1.
 * `issue(device, pk, role)` → bundle; `admin(...)` etc. Deterministic when `seed` (32 bytes)
 * is given: every key is derived from it by HMAC, so a demo can be re-created.
 */
export function createCa({ venue, seed = null, cloudId = 'cloud', validMs = 0 } = {}) {
  const derive = (label) => seed ? createHmac('sha256', seed).update(label).digest() : randomBytes(32);
  const root = keyPair(derive('root'));
  const cloudKey = keyPair(derive('cloud'));
  const notBefore = 0, notAfter = validMs ? Date.now() + validMs : 0;
  const cloudChain = encodeChain([issueCert(root, { role: 'cloud', venue, subject: cloudId, pk: cloudKey.pk, notBefore, notAfter })]);
  const keys = [{ epoch: 1, key: derive('content-1') }];
  const revoked = [];
  let crlSeq = 0n;
  const ca = {
    venue, root, cloudKey, cloudId, cloudChain, keys, revoked,
    /** The chain (bytes) for a device key `pk`, issued by the root (or by `admin` = { key, chain }). */
    chainFor(device, pk, { role = 'device', admin = null, notAfter: na = notAfter } = {}) {
      if (admin) {
        const cert = issueCert(admin.key, { role, venue, subject: device, pk, notBefore, notAfter: na });
        return encodeChain([cert, decodeChain(admin.chain)[0].bytes]);
      }
      return encodeChain([issueCert(root, { role, venue, subject: device, pk, notBefore, notAfter: na })]);
    },
    /** The credential bundle for `device` whose public key is `pk` (cloud admission). */
    bundle(device, pk, opts = {}) {
      return makeBundle({ venue, device, rootPk: root.pk, chain: ca.chainFor(device, pk, opts),
        cloudChain, keys, crl: revoked.length ? ca.crl() : null });
    },
    /** A device key pair plus its bundle (for tests that play a device outside a browser). */
    device(device, opts = {}) {
      const key = keyPair();
      return { key, bundle: ca.bundle(device, key.pk, opts), chain: ca.chainFor(device, key.pk, opts) };
    },
    /** Adds `pk`'s fingerprint to the revocation list; returns the new root-signed CRL. */
    revoke(pk) { revoked.push(fp(pk)); return ca.crl(); },
    crl() { crlSeq += 1n; return makeCrl(root, { venue, seq: crlSeq, fps: revoked }); },
    /** The ingest's trust file (`ingest.py --trust`): the cloud's bundle plus its seed. */
    ingestTrust() {
      return { ...makeBundle({ venue, device: cloudId, rootPk: root.pk, chain: cloudChain, cloudChain, keys }),
        secret: b64(cloudKey.seed) };
    },
  };
  return ca;
}

/**
 * The demo and test CA of `venue`: every key derived from a public seed, so the demo's
 * server (scripts/serve.mjs `POST /ca/issue`), the test process and scripts/demo's ingest
 * all hold the same CA without talking to each other. **Not secret by construction**: only
 * for the demo and the tests; a real venue's CA keeps a random root key on its server.
 */
export function demoCa(venue) {
  return createCa({ venue, seed: sha256(Buffer.from(`venuemesh demo CA, not secret: ${venue}`)) });
}
