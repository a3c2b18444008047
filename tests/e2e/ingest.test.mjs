// The reference ingest (tests/ingest/ingest.py, Python standard library only)
// against a real Mosquitto: UPLOAD envelopes signed here (tests/ingest/envelope.mjs)
// go in on vm/{venue}/up, rows land in SQLite, signed CLOUD_ACKs come back on
// vm/{venue}/cloud. No browser. A private broker (this test restarts it), so the
// test runs alone (`node --test tests/e2e/ingest.test.mjs`) or under scripts/test.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomBytes } from 'node:crypto';
import mqtt from 'mqtt';
import { startBroker, freePort, sleep, waitFor as waitUntil } from './lib.mjs';
import * as E from '../ingest/envelope.mjs';

const DIR = join(dirname(fileURLToPath(import.meta.url)), '..', 'ingest');
// Debian's interpreter is the one the ingest promises to run on.
const PYTHON = process.env.VM_PYTHON || (existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3');
const SECRET = 'venuemesh-test-secret-0123456789';
const VENUE = `ingest-${Date.now().toString(36)}${randomBytes(2).toString('hex')}`;
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
  ingest = spawn(PYTHON, [join(DIR, 'ingest.py'), '--broker', `127.0.0.1:${tcp}`, '--venue', VENUE, '--key', SECRET,
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
      const env = E.open(payload, { secret: SECRET, venue: VENUE });
      acks.push({ topic, env, ids: E.decodeCloudAck(env.body) });
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

const cmdsOf = (prefix, n, extraFields = {}) => Array.from({ length: n }, (_, i) => ({
  id: `${prefix}-${i}`, origin: 'pos-1', topic: 'sale', hlc: E.packHlc(Date.now(), i), createdAt: 1_769_508_000_000 + i,
  payload: Buffer.from(`payload ${i}`), ...extraFields,
}));

function sealUpload(batch, cmds, over = {}) {
  return E.seal({ secret: SECRET, venue: VENUE, sender: 'hub-1', kind: E.KIND.UPLOAD, counter: counter++,
    body: E.encodeUpload(batch, cmds), ...over });
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

test('--self-test reproduces PROTOCOL.md\'s byte examples, and so does envelope.mjs', () => {
  const r = spawnSync(PYTHON, [join(DIR, 'ingest.py'), '--self-test'], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stdout + r.stderr);
  assert.match(r.stdout, / 0 failed/);
  const vector = E.seal({ secret: SECRET, venue: 'demo-venue', sender: 'pos-1', kind: 1, counter: 42n, term: 7n,
    hlc: 0x019bfee551000003n, body: Buffer.from('hello') });
  assert.equal(vector.toString('hex'), '0101010a64656d6f2d76656e756505706f732d31000000000000002a0000000000000007' +
    '019bfee5510000030000000568656c6c6fc96281b89665a998f9748bd97a04ae3af19ec1b33de1c76981c04dc1ebf5015f');
  assert.equal(E.encodeCloudAck(['c1', 'c2']).toString('hex'), '1200020002633100026332');
});

const first = cmdsOf('a', 3);
first[1].payload = Buffer.from(Array.from({ length: 256 }, (_, i) => i)); // every byte value
first[2].topic = 'inventory/ünï'; // UTF-8 topic

test('an upload is stored, then acked with a signed CLOUD_ACK naming its ids', { timeout: 30_000 }, async () => {
  const before = Date.now();
  const got = await uploadAndAck(sealUpload(1, first), first.map((c) => c.id));
  assert.equal(got.length, 1, 'one ack message');
  const [{ topic, env, ids, error }] = got;
  assert.equal(error, undefined, 'the ack opens with the venue key');
  assert.equal(topic, CLOUD);
  assert.deepEqual(ids, first.map((c) => c.id));
  assert.equal(env.kind, E.KIND.CLOUD_ACK);
  assert.equal(env.sender, 'ingest');
  assert.equal(env.term, 0n);
  const wall = Number(env.hlc >> 16n);
  assert.ok(wall >= before - 1000 && wall <= Date.now() + 1000, `ack HLC is now: ${wall}`);
  assert.ok(env.counter >= BigInt(before - 60_000) * 1024n, 'counter starts at wall ms × 1024');
  assert.deepEqual(out.at(-1), { batch: 1, from: 'hub-1', ids: 3, new: 3 });
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
  const got = await uploadAndAck(sealUpload(1, first, { sender: 'hub-2' }), first.map((c) => c.id));
  assert.equal(got.length, 1);
  assert.deepEqual(got[0].ids, first.map((c) => c.id), 'ids already stored are acked too');
  assert.ok(got[0].env.counter > earlier, 'ack counters only grow');
  assert.deepEqual(out.at(-1), { batch: 1, from: 'hub-2', ids: 3, new: 0 });
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
  const cases = {
    bad_signature: [flipped, sealUpload(2, cmds, { secret: 'another-secret-0123456789' })],
    wrong_venue: [E.seal({ secret: SECRET, venue: 'other-venue', sender: 'hub-1', kind: E.KIND.UPLOAD, counter: counter++, body: E.encodeUpload(2, cmds) })],
    unknown_key: [sealUpload(2, cmds, { keyId: 2 })],
    kind_mismatch: [sealUpload(2, cmds, { kind: E.KIND.HEARTBEAT }), sealUpload(2, cmds, { kind: E.KIND.UPLOAD, body: E.encodeCloudAck(['x']) })],
    stale_event: [sealUpload(2, cmds, { hlc: E.packHlc(Date.now() - 10 * 60_000) })],
    bad_body: [sealUpload(2, cmds, { body: Buffer.from([E.TYPE.UPLOAD, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0]) }),
      sealUpload(2, cmds, { body: E.encodeUpload(2, cmds).subarray(0, 30) })],
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

test('a batch of 1,200 commands is acked in messages of at most 1,000 ids', { timeout: 30_000 }, async () => {
  const cmds = cmdsOf('big', 1200);
  const got = await uploadAndAck(sealUpload(3, cmds), cmds.map((c) => c.id));
  assert.deepEqual(got.map((a) => a.ids.length), [1000, 200]);
  assert.deepEqual(got.flatMap((a) => a.ids), cmds.map((c) => c.id));
  assert.equal(query().count, 1205);
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
  assert.equal(query().count, 1207);
});

test('SIGTERM stops the ingest cleanly', { timeout: 15_000 }, async () => {
  const exited = new Promise((r) => ingest.once('exit', (code, signal) => r({ code, signal })));
  ingest.kill('SIGTERM');
  assert.deepEqual(await exited, { code: 0, signal: null });
  assert.match(err, /stopping; stats \{.*"batches": 5/);
});
