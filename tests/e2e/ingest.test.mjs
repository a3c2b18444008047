// The reference ingest (tests/ingest/ingest.py, Python + python3-cryptography)
// against a real Mosquitto: v2 UPLOAD envelopes sealed here with device keys from the
// Node test CA (tests/ca/trust.mjs) go in on vm/{venue}/up, only commands their origin
// signed land in SQLite, CLOUD_ACKs carrying receipts signed by the cloud key come back
// on vm/{venue}/cloud. No browser. A private broker (this test restarts it), so the
// test runs alone (`node --test tests/e2e/ingest.test.mjs`) or under scripts/test.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomBytes } from 'node:crypto';
import mqtt from 'mqtt';
import { startBroker, freePort, sleep, waitFor as waitUntil } from './lib.mjs';
import * as E from '../ca/trust.mjs';

const DIR = join(dirname(fileURLToPath(import.meta.url)), '..', 'ingest');
// Debian's interpreter is the one the ingest promises to run on.
const PYTHON = process.env.VM_PYTHON || (existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3');
const VENUE = `ingest-${Date.now().toString(36)}${randomBytes(2).toString('hex')}`;
const CA = E.createCa({ venue: VENUE });
const HUB1 = CA.device('hub-1'), HUB2 = CA.device('hub-2'), POS = CA.device('pos-1'), ROGUE = CA.device('pos-9');
const CK = CA.keys[0].key;
/** How the test reads the ingest's acks: as any device of the venue would. */
const deviceTrust = () => ({ rootPk: CA.root.pk, venue: VENUE, contentKeys: new Map([[1, CK]]), certs: new Map(), revoked: new Set() });
const UP = `vm/${VENUE}/up`, CLOUD = `vm/${VENUE}/cloud`;

let broker, tcp, extra, tmp, db, ready, ingest, client;
const out = [], acks = [];
let err = '';
let counter = E.counterFloor();

before(async () => {
  tcp = await freePort();
  extra = `listener ${tcp} 127.0.0.1\nprotocol mqtt`; // the ingest speaks plain MQTT over TCP
  broker = await startBroker({ extra });
  tmp = mkdtempSync(join(tmpdir(), 'vm-ingest-'));
  db = join(tmp, 'ingest.sqlite');
  ready = join(tmp, 'ready.json');
  writeFileSync(join(tmp, 'trust.json'), JSON.stringify(CA.ingestTrust()));
  ingest = spawn(PYTHON, [join(DIR, 'ingest.py'), '--broker', `127.0.0.1:${tcp}`, '--venue', VENUE, '--trust', join(tmp, 'trust.json'),
    '--db', db, '--ready-file', ready], { stdio: ['ignore', 'pipe', 'pipe'] });
  let partial = '';
  ingest.stdout.on('data', (d) => {
    const lines = (partial + d).split('\n');
    partial = lines.pop();
    out.push(...lines.map((l) => JSON.parse(l)));
  });
  ingest.stderr.on('data', (d) => { err += d; if (process.env.VM_E2E_VERBOSE) process.stderr.write(d); });
  client = await mqtt.connectAsync(broker.url, { reconnectPeriod: 200 });
  client.on('message', (topic, payload) => {
    try {
      const env = E.open(payload, deviceTrust());
      const receipt = E.openReceipt(E.decodeCloudAck(env.body), { rootPk: CA.root.pk, venue: VENUE });
      acks.push({ topic, env, receipt, ids: receipt.entries.map((e) => e.id), raw: Buffer.from(payload) });
    } catch (e) {
      acks.push({ topic, error: e.message });
    }
  });
  await client.subscribeAsync(CLOUD, { qos: 1 });
  await waitFor(() => subscriptions() >= 1, 10_000, 'the ingest is subscribed');
});

after(async () => {
  if (ingest && ingest.exitCode === null) ingest.kill('SIGKILL');
  await client?.endAsync(true);
  await broker?.stop();
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

const waitFor = (pred, ms, what) => waitUntil(pred, ms, what, { every: 25, detail: () => `ingest stderr:\n${err}` });

function subscriptions() {
  try { return JSON.parse(readFileSync(ready, 'utf8')).subscribed; } catch { return 0; }
}

const query = () => {
  const r = spawnSync(PYTHON, [join(DIR, 'query.py'), '--db', db, '--rows'], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  return JSON.parse(r.stdout);
};

/** `n` commands of pos-1 (or `signer`'s key over them, e.g. a rogue's), each with its origin signature. */
const cmdsOf = (prefix, n, extraFields = {}, signer = POS) => Array.from({ length: n }, (_, i) => {
  const c = { id: `${prefix}-${i}`, origin: 'pos-1', topic: 'sale', hlc: E.packHlc(Date.now(), i), createdAt: 1_769_508_000_000 + i,
    payload: Buffer.from(`payload ${i}`), ...extraFields };
  return { ...c, sig: E.signCmd(signer.key, VENUE, c) };
});

/** A v2 UPLOAD from `hub` (HUB1) with the cert table holding pos-1's chain. */
function sealUpload(batch, cmds, { hub = HUB1, sender = hub === HUB2 ? 'hub-2' : 'hub-1', chains = [POS.chain], body, ...over } = {}) {
  return E.seal({ key: hub.key, venue: VENUE, sender, kind: E.KIND.UPLOAD, counter: counter++, chain: hub.chain,
    body: body ?? E.encodeUpload(batch, chains, cmds), contentKey: CK, epoch: 1, ...over });
}

const publish = (payload) => client.publishAsync(UP, payload, { qos: 1 });

/** Publishes `env` and waits for the acks that cover exactly `ids`. */
async function uploadAndAck(env, ids) {
  const from = acks.length;
  await publish(env);
  const got = () => acks.slice(from).flatMap((a) => a.ids ?? []);
  await waitFor(() => got().length >= ids.length, 10_000, `acks for ${ids.length} ids arrived`);
  await sleep(200); // an extra ack would arrive by now
  return acks.slice(from);
}

test('--self-test passes (v2 envelope, origin signatures, receipts, forgeries refused)', () => {
  const r = spawnSync(PYTHON, [join(DIR, 'ingest.py'), '--self-test'], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stdout + r.stderr);
  assert.match(r.stdout, / 0 failed/);
});

const first = cmdsOf('a', 3);
first[1].payload = Buffer.from(Array.from({ length: 256 }, (_, i) => i)); // every byte value
first[2].topic = 'inventory/ünï'; // UTF-8 topic
for (const c of first) c.sig = E.signCmd(POS.key, VENUE, c); // signed as they now are

test('an upload is stored, then acked with a CLOUD_ACK whose receipt the cloud key signed over each digest', { timeout: 30_000 }, async () => {
  const before = Date.now();
  const got = await uploadAndAck(sealUpload(1, first), first.map((c) => c.id));
  assert.equal(got.length, 1, 'one ack message');
  const [{ topic, env, ids, error }] = got;
  assert.equal(error, undefined, 'the ack opens with the cloud chain and its receipt verifies');
  assert.equal(topic, CLOUD);
  assert.deepEqual(ids, first.map((c) => c.id));
  assert.deepEqual(got[0].receipt.entries.map((e) => e.digest.toString('hex')), first.map((c) => E.cmdDigest(c, c.sig).toString('hex')));
  assert.equal(env.kind, E.KIND.CLOUD_ACK);
  assert.equal(env.role, E.ROLE.cloud);
  assert.equal(env.sender, 'cloud');
  assert.ok(env.flags & E.FLAG.ENCRYPTED, 'the ack body is encrypted');
  assert.equal(env.term, 0n);
  const wall = Number(env.hlc >> 16n);
  assert.ok(wall >= before - 1000 && wall <= Date.now() + 1000, `ack HLC is now: ${wall}`);
  assert.ok(env.counter >= BigInt(before - 60_000) * 1024n, 'counter starts at wall ms × 1024');
  assert.deepEqual(out.at(-1), { batch: 1, from: 'hub-1', ids: 3, new: 3, refused: 0 });
  const q = query();
  assert.equal(q.count, 3);
  assert.equal(q.duplicates_absorbed, 0);
  for (const c of first) {
    const row = q.rows.find((r) => r.id === c.id);
    assert.ok(row, `row ${c.id}`);
    assert.equal(row.origin, c.origin);
    assert.equal(row.topic, c.topic);
    assert.equal(row.hlc, c.hlc.toString(16).padStart(16, '0'));
    assert.equal(row.created_at, c.createdAt);
    assert.equal(row.payload_hex, c.payload.toString('hex'));
    assert.equal(row.uploads, 1);
  }
});

test('the same batch uploaded again (a retry or a new hub) is acked again and stored once', { timeout: 30_000 }, async () => {
  const earlier = acks.at(-1).env.counter;
  const got = await uploadAndAck(sealUpload(1, first, { hub: HUB2 }), first.map((c) => c.id));
  assert.equal(got.length, 1);
  assert.deepEqual(got[0].ids, first.map((c) => c.id), 'ids already stored are acked too');
  assert.ok(got[0].env.counter > earlier, 'ack counters only grow');
  assert.deepEqual(out.at(-1), { batch: 1, from: 'hub-2', ids: 3, new: 0, refused: 0 });
  const q = query();
  assert.equal(q.count, 3, 'no duplicate row');
  assert.equal(q.duplicates_absorbed, 3);
  assert.ok(q.rows.every((r) => r.uploads === 2), 'uploads = 2 on every row');
});

test('tampered, replayed, foreign, stale and malformed messages get no ack and do not stop the service', { timeout: 30_000 }, async () => {
  const cmds = cmdsOf('bad', 2);
  const good = sealUpload(2, cmds);
  const flipped = Buffer.from(good);
  flipped[good.length - 40] ^= 0x01; // inside the body
  const other = E.createCa({ venue: VENUE }).device('hub-1'); // the right venue name, another root
  const cases = {
    bad_signature: [flipped, sealUpload(2, cmds, { key: ROGUE.key })],
    bad_chain: [sealUpload(2, cmds, { hub: other })],
    unknown_sender: [sealUpload(2, cmds, { hub: { key: CA.device('hub-7').key, chain: null }, sender: 'hub-7' })],
    wrong_venue: [E.seal({ key: HUB1.key, venue: 'other-venue', sender: 'hub-1', kind: E.KIND.UPLOAD, counter: counter++, body: E.encodeUpload(2, [POS.chain], cmds) })],
    kind_mismatch: [sealUpload(2, cmds, { kind: E.KIND.HEARTBEAT }), sealUpload(2, cmds, { body: E.encodeCloudAck(Buffer.from('x')) })],
    stale_event: [sealUpload(2, cmds, { hlc: E.packHlc(Date.now() - 10 * 60_000) })],
    bad_body: [sealUpload(2, cmds, { body: Buffer.from([E.TYPE.UPLOAD, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0]) }),
      sealUpload(2, cmds, { body: E.encodeUpload(2, [POS.chain], cmds).subarray(0, 30) }),
      sealUpload(2, cmds, { contentKey: Buffer.alloc(32, 9) })],
    truncated: [Buffer.alloc(0), good.subarray(0, 50)],
    bad_version: [randomBytes(300).fill(7, 0, 1)],
  };
  const from = acks.length;
  for (const payloads of Object.values(cases)) for (const p of payloads) await publish(p);
  await publish(good);
  await publish(good); // the same envelope twice: a duplicate in the replay window
  await waitFor(() => acks.length > from, 10_000, 'the good upload is acked');
  await sleep(500);
  const got = acks.slice(from);
  assert.equal(got.length, 1, `only the good upload is acked: ${JSON.stringify(got.map((a) => a.ids))}`);
  assert.deepEqual(got[0].ids, cmds.map((c) => c.id));
  assert.equal(ingest.exitCode, null, 'still running');
  for (const reason of [...Object.keys(cases), 'duplicate']) assert.match(err, new RegExp(`: ${reason}\\n`), `logged ${reason}`);
  const q = query();
  assert.equal(q.count, 5);
  assert.ok(!q.ids.includes('x'));
});

test('a forged sale is never stored nor acked: a rogue device with a valid cert cannot sign for pos-1', { timeout: 30_000 }, async () => {
  // The attack of issue #15: sales in a real POS's name. ROGUE holds a valid device
  // certificate of the venue (and the content key), so its envelopes open; only the
  // origin signature over each command tells the forgery apart.
  const forged = cmdsOf('forged', 3, { payload: Buffer.from('refund 999') }, ROGUE);
  const real = cmdsOf('real', 1);
  const from = acks.length, refusedBefore = (err.match(/bad_origin_sig/g) ?? []).length;
  const asRogueHub = E.seal({ key: ROGUE.key, venue: VENUE, sender: 'pos-9', kind: E.KIND.UPLOAD, counter: counter++, chain: ROGUE.chain,
    body: E.encodeUpload(9, [POS.chain, ROGUE.chain], [...forged, ...real]), contentKey: CK, epoch: 1 });
  await publish(asRogueHub);
  // the same forgeries with the cert table naming the rogue's chain under pos-1's name, and with no table at all
  const renamed = E.seal({ key: ROGUE.key, venue: VENUE, sender: 'pos-9', kind: E.KIND.UPLOAD, counter: counter++, chain: ROGUE.chain,
    body: E.encodeUpload(10, [ROGUE.chain], forged), contentKey: CK, epoch: 1 });
  await publish(renamed);
  await waitFor(() => acks.length > from, 10_000, 'the real sale of the mixed batch is acked');
  await sleep(500);
  const got = acks.slice(from);
  assert.deepEqual(got.flatMap((a) => a.ids), real.map((c) => c.id), 'only the genuinely signed command is acked');
  const ids = query().ids;
  for (const c of forged) assert.ok(!ids.includes(c.id), `forged ${c.id} is not stored`);
  assert.ok(ids.includes(real[0].id));
  assert.ok((err.match(/bad_origin_sig/g) ?? []).length >= refusedBefore + 3, err);
  assert.match(err, /bad_origin_chain/);
  // and a CLOUD_ACK a device makes with its own (valid) key is refused by every device
  const fakeReceipt = E.makeReceipt(ROGUE.key, { venue: VENUE, entries: forged.map((c) => ({ id: c.id, digest: E.cmdDigest(c, c.sig) })), cloudChain: CA.cloudChain });
  const fakeAck = E.seal({ key: ROGUE.key, venue: VENUE, sender: 'pos-9', kind: E.KIND.CLOUD_ACK, counter: counter++, chain: ROGUE.chain,
    body: E.encodeCloudAck(fakeReceipt), contentKey: CK, epoch: 1 });
  assert.throws(() => E.open(fakeAck, deviceTrust()), (e) => e.reason === 'wrong_role');
  assert.throws(() => E.openReceipt(fakeReceipt, { rootPk: CA.root.pk, venue: VENUE }), (e) => e.reason === 'bad_receipt');
});

test('a batch of 1,200 commands is acked in messages of at most 1,000 ids', { timeout: 30_000 }, async () => {
  const cmds = cmdsOf('big', 1200);
  const got = await uploadAndAck(sealUpload(3, cmds), cmds.map((c) => c.id));
  assert.deepEqual(got.map((a) => a.ids.length), [1000, 200]);
  assert.deepEqual(got.flatMap((a) => a.ids), cmds.map((c) => c.id));
  assert.equal(query().count, 1206);
});

test('the ingest reconnects and resubscribes after the broker restarts', { timeout: 60_000 }, async () => {
  await broker.stop();
  await sleep(300);
  broker = await startBroker({ port: broker.port, extra });
  await waitFor(() => subscriptions() >= 2, 20_000, 'the ingest subscribed again');
  await waitFor(() => client.connected, 10_000, 'MQTT.js reconnected');
  await client.subscribeAsync(CLOUD, { qos: 1 });
  const cmds = cmdsOf('after-restart', 2);
  const got = await uploadAndAck(sealUpload(4, cmds), cmds.map((c) => c.id));
  assert.deepEqual(got.flatMap((a) => a.ids), cmds.map((c) => c.id));
  assert.equal(query().count, 1208);
});

test('SIGTERM stops the ingest cleanly', { timeout: 15_000 }, async () => {
  const exited = new Promise((r) => ingest.once('exit', (code, signal) => r({ code, signal })));
  ingest.kill('SIGTERM');
  assert.deepEqual(await exited, { code: 0, signal: null });
  assert.match(err, /stopping; stats \{.*"batches": 7/);
});
