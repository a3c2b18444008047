// MqttClient end to end: real Chromium pages (one browser context per
// device) against real Mosquitto brokers, plus a scripted fake broker for
// malformed input. Page helpers: tests/e2e/pages/mqtt.mjs (window.t).
//
// VM_E2E_CLIENT=mqttjs runs the same tests against MQTT.js through a shim of
// the same API (tests/e2e/pages/mqttjs-shim.mjs), as a check of the tests
// themselves: retained, wildcards, Will, QoS downgrade and both restart tests
// pass there; these fail by design: pub/sub (the shim has no byte counts),
// failover switch-back (MQTT.js has no preferred-broker probe), error codes
// (MQTT.js has none) and malformed input (MQTT.js keeps the connection open).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { launch, BROKER, BROKER_IMPL, startBroker, freePort, sleep, helperDevice, callPage, brokerAuthFragment } from './lib.mjs';
import { startFakeBroker, CONNACK_OK } from './fakebroker.mjs';

const CLIENT = process.env.VM_E2E_CLIENT || 'venuemesh';
// The fragment: the shared broker's account (its config admits no anonymous client).
const PAGE = `/tests/e2e/pages/mqtt.html?client=${CLIENT}${brokerAuthFragment()}`;
// Topics of this run: the shared test broker keeps retained messages.
const RUN = `${Date.now().toString(36)}${randomBytes(2).toString('hex')}`;
const T = (...parts) => ['e2e', RUN, ...parts].join('/');

let browser;
before(async () => { browser = await launch(); });
after(async () => { await browser?.close(); });

const device = (t) => helperDevice(browser, PAGE, t);
const call = callPage;
const noPageErrors = (...ds) => { for (const d of ds) assert.deepEqual(d.errors.map(String), [], 'uncaught errors in the page'); };
const b64 = (buf) => ({ b64: Buffer.from(buf).toString('base64') });
const bytesOf = (p) => (typeof p === 'string' ? Buffer.from(p, 'utf8') : Buffer.from(p.b64, 'base64'));
async function privateBroker(t, opts) {
  const b = await startBroker(opts);
  t.after(() => b.stop());
  return b;
}

for (const qos of [0, 1, 2]) {
  test(`publish/subscribe between two devices at QoS ${qos}: payloads arrive intact, in order`, { timeout: 60_000 }, async (t) => {
    const a = await device(t), b = await device(t);
    const ra = await call(a, 'connect', 'c', { brokers: [BROKER] });
    const rb = await call(b, 'connect', 'c', { brokers: [BROKER] });
    for (const r of [ra, rb]) assert.deepEqual(r, { url: BROKER, connected: true }, 'connect() resolves connected, with url');
    const topic = T('pubsub', `q${qos}`);
    await call(b, 'sub', 'c', topic, qos);
    const payloads = [
      'hello',
      '',                                               // empty payload
      'ünïcødé ✓ 🎉',                                   // multi-byte UTF-8 string
      b64(Uint8Array.from({ length: 256 }, (_, i) => i)), // every byte value, incl. 0 and invalid UTF-8
      // 3-byte remaining length, 64-bit WebSocket length. Not larger: Mosquitto
      // 2.0.11 forwards big WebSocket messages slowly (70 KB ≈ 1.7 s here).
      b64(randomBytes(70_000)),
    ];
    // Each publish promise must resolve (QoS 0: written, 1: PUBACK, 2: PUBCOMP).
    for (const p of payloads) await call(a, 'pub', 'c', topic, p, { qos });
    const got = await call(b, 'waitCount', 'c', topic, payloads.length, 20_000);
    await sleep(300); // a duplicate would arrive by now
    const all = await call(b, 'messages', 'c', topic);
    assert.equal(all.length, payloads.length, 'each message exactly once');
    for (const [i, p] of payloads.entries()) {
      assert.equal(got[i].topic, topic);
      assert.ok(Buffer.from(got[i].b64, 'base64').equals(bytesOf(p)), `payload ${i} intact`);
      assert.equal(got[i].qos, qos, `message ${i} info.qos`);
      assert.equal(got[i].retain, false, `message ${i} info.retain`);
      assert.equal(got[i].dup, false, `message ${i} info.dup`);
    }
    const stats = await call(a, 'state', 'c');
    assert.ok(stats.stats.bytesOut > 70_000, `publisher stats().bytesOut counts what it sent: ${JSON.stringify(stats.stats)}`);
    noPageErrors(a, b);
  });
}

test('delivered QoS is the lower of the publish and the subscription QoS', { timeout: 60_000 }, async (t) => {
  const a = await device(t), b = await device(t);
  await call(a, 'connect', 'c', { brokers: [BROKER] });
  await call(b, 'connect', 'c', { brokers: [BROKER] });
  const cases = [[2, 0, 0], [2, 1, 1], [1, 2, 1], [0, 2, 0]]; // [publish, subscription, delivered]
  for (const [pq, sq] of cases) await call(b, 'sub', 'c', T('downgrade', `p${pq}s${sq}`), sq);
  for (const [pq, sq] of cases) await call(a, 'pub', 'c', T('downgrade', `p${pq}s${sq}`), `p${pq}s${sq}`, { qos: pq });
  const got = await call(b, 'waitCount', 'c', null, cases.length, 10_000);
  for (const [pq, sq, want] of cases) {
    const m = got.find((x) => x.text === `p${pq}s${sq}`);
    assert.ok(m, `message published at ${pq} to a QoS ${sq} subscription arrived`);
    assert.equal(m.qos, want, `publish QoS ${pq}, subscription QoS ${sq}`);
  }
  noPageErrors(a, b);
});

test('a retained message reaches a later subscriber with retain: true; clearing it works', { timeout: 60_000 }, async (t) => {
  const a = await device(t);
  await call(a, 'connect', 'c', { brokers: [BROKER] });
  const topic = T('retained', 'state');
  await call(a, 'pub', 'c', topic, 'state-1', { qos: 1, retain: true });
  await call(a, 'pub', 'c', topic, b64([0, 1, 2, 255]), { qos: 1, retain: true }); // replaces state-1

  const b = await device(t); // connects only now
  await call(b, 'connect', 'c', { brokers: [BROKER] });
  await call(b, 'sub', 'c', topic, 1);
  const [retained] = await call(b, 'waitCount', 'c', topic, 1, 10_000);
  assert.deepEqual([...Buffer.from(retained.b64, 'base64')], [0, 1, 2, 255], 'the last retained payload');
  assert.equal(retained.retain, true, 'info.retain of a retained message');
  assert.equal(retained.qos, 1);
  // A live message to an existing subscription has retain false (MQTT 3.1.1 §3.3.1.3).
  await call(a, 'pub', 'c', topic, 'live', { qos: 1, retain: true });
  const got = await call(b, 'waitCount', 'c', topic, 2, 10_000);
  assert.equal(got.length, 2, `exactly the retained and the live message: ${got.map((m) => m.text)}`);
  assert.equal(got[1].text, 'live');
  assert.equal(got[1].retain, false, 'a live message is not flagged retained');

  // An empty retained payload clears it: a new subscriber gets nothing before a later marker.
  await call(a, 'pub', 'c', topic, '', { qos: 1, retain: true });
  const c = await device(t);
  await call(c, 'connect', 'c', { brokers: [BROKER] });
  await call(c, 'sub', 'c', topic, 1);
  await call(a, 'pub', 'c', topic, 'marker', { qos: 1 });
  const seen = await call(c, 'waitCount', 'c', topic, 1, 10_000);
  assert.deepEqual(seen.map((m) => m.text), ['marker'], 'no retained message after clearing');
  noPageErrors(a, b, c);
});

test('wildcards: + and # receive the right topics only; unsubscribe stops delivery', { timeout: 60_000 }, async (t) => {
  const a = await device(t), b = await device(t);
  await call(a, 'connect', 'c', { brokers: [BROKER] });
  await call(b, 'connect', 'c', { brokers: [BROKER] });
  const base = T('wild');
  const plus = `${base}/+/temp`, hash = `${base}/hall/#`;
  await call(b, 'sub', 'c', plus, 1);
  await call(b, 'sub', 'c', hash, 1);
  const sends = ['kitchen/temp', 'kitchen/temp/raw', 'temp', 'kitchen/humidity', 'bar/temp', 'hall', 'hall/door',
    'hallway', 'hall/door/left', 'ha/temp/x', 'zz/temp', 'hall/zz'];
  for (const s of sends) await call(a, 'pub', 'c', `${base}/${s}`, s, { qos: 1 });
  // zz/temp and hall/zz go last: once both are in, everything before them is.
  await call(b, 'waitTexts', 'c', plus, ['zz/temp'], 10_000);
  await call(b, 'waitTexts', 'c', hash, ['hall/zz'], 10_000);
  const texts = async (f) => (await call(b, 'messages', 'c', f)).map((m) => m.text);
  assert.deepEqual(await texts(plus), ['kitchen/temp', 'bar/temp', 'zz/temp'], `${plus} gets one level only`);
  assert.deepEqual(await texts(hash), ['hall', 'hall/door', 'hall/door/left', 'hall/zz'], `${hash} gets the parent and all below`);
  for (const m of await call(b, 'messages', 'c', null)) assert.equal(m.topic, `${base}/${m.text}`, 'topic given to the callback');

  await call(b, 'unsub', 'c', plus);
  await call(a, 'pub', 'c', `${base}/kitchen/temp`, 'after-unsubscribe', { qos: 1 });
  await call(a, 'pub', 'c', `${base}/hall/zz2`, 'hall/zz2', { qos: 1 });
  await call(b, 'waitTexts', 'c', hash, ['hall/zz2'], 10_000);
  await sleep(200);
  assert.deepEqual(await texts(plus), ['kitchen/temp', 'bar/temp', 'zz/temp'], 'nothing after unsubscribe');
  noPageErrors(a, b);
});

test('Last Will: closing a device\'s browser context delivers its will; close() does not', { timeout: 60_000 }, async (t) => {
  const b = await device(t);
  await call(b, 'connect', 'c', { brokers: [BROKER] });
  await call(b, 'sub', 'c', T('will', '+'), 1);
  const willBytes = Uint8Array.from({ length: 300 }, (_, i) => (i * 7) & 255);

  // A clean close() sends DISCONNECT: the broker must discard that will.
  const polite = await device(t);
  await call(polite, 'connect', 'c', { brokers: [BROKER], will: { topic: T('will', 'polite'), payload: 'polite gone', qos: 1 } });
  await call(polite, 'close', 'c');

  const a = await device(t);
  await call(a, 'connect', 'c', { brokers: [BROKER], keepAlive: 30, will: { topic: T('will', 'a'), payload: b64(willBytes), qos: 1, retain: false } });
  const t0 = Date.now();
  await a.context.close(); // the tab is gone without a DISCONNECT
  const [will] = await call(b, 'waitCount', 'c', T('will', '+'), 1, 10_000);
  t.diagnostic(`will delivered ${Date.now() - t0} ms after the context closed`);
  assert.equal(will.topic, T('will', 'a'), `the will of the closed context (got ${will.topic}: ${will.text})`);
  assert.ok(Buffer.from(will.b64, 'base64').equals(Buffer.from(willBytes)), 'will payload intact');
  assert.equal(will.qos, 1);
  await sleep(500);
  const all = await call(b, 'messages', 'c', null);
  assert.deepEqual(all.map((m) => m.topic), [T('will', 'a')], 'no will after close()');
  noPageErrors(b, polite);
});

test('QoS 1 messages in flight while the broker restarts all arrive after reconnect (persistent sessions)', { timeout: 120_000 }, async (t) => {
  // Both clients use clean: false with fixed client ids, and the broker keeps
  // sessions across its restart (persistence on): the broker queues for the
  // subscriber whatever the publisher resends, whichever reconnects first.
  // So the only way to lose a message is a publisher that forgets an
  // unacknowledged or not yet sent QoS 1 message. Duplicates are allowed.
  if (BROKER_IMPL === 'aedes') {
    // Aedes keeps sessions in its persistence, here the default in-memory one:
    // a restarted Aedes has forgotten them (README "Brokers").
    t.skip('aedes with in-memory persistence forgets sessions when it restarts');
    return;
  }
  const dir = mkdtempSync(join(tmpdir(), 'vm-persist-'));
  chmodSync(dir, 0o777); // Debian's mosquitto drops root for the user mosquitto
  const extra = `persistence true\npersistence_location ${dir}/\nautosave_interval 0`;
  let broker = await startBroker({ extra });
  t.after(() => broker.stop());
  const s = await device(t), p = await device(t);
  const topic = T('restart', 'seq');
  await call(s, 'connect', 's', { brokers: [broker.url], clientId: `e2e-s-${RUN}`, clean: false });
  await call(s, 'sub', 's', topic, 1);
  await call(p, 'connect', 'p', { brokers: [broker.url], clientId: `e2e-p-${RUN}`, clean: false });

  await call(p, 'pubMany', 'p', topic, 'm', 0, 100, { qos: 1 }); // not awaited: some are in flight
  await broker.stop();
  await call(p, 'waitEvent', 'p', 'disconnected', { ms: 10_000 });
  await call(s, 'waitEvent', 's', 'disconnected', { ms: 10_000 });
  await call(p, 'pubMany', 'p', topic, 'm', 100, 200, { qos: 1 }); // while the broker is down
  await sleep(500);
  broker = await startBroker({ port: broker.port, extra });

  const rejected = await call(p, 'settle', 'p', 60_000);
  assert.deepEqual(rejected, [], 'every publish promise resolves');
  const want = Array.from({ length: 200 }, (_, i) => `m${i}`);
  const got = await call(s, 'waitTexts', 's', topic, want, 30_000);
  const dups = got.length - new Set(got.map((m) => m.text)).size;
  t.diagnostic(`${got.length} deliveries of 200 messages (${dups} duplicates)`);
  for (const d of [p, s]) {
    const st = await call(d, 'state', d === p ? 'p' : 's');
    assert.equal(st.connected, true);
    assert.equal(st.url, broker.url);
    assert.ok(st.stats.reconnects >= 1, `stats().reconnects counts the reconnect: ${JSON.stringify(st.stats)}`);
  }
  noPageErrors(s, p);
});

test('a clean-session subscriber resubscribes by itself after the broker restarts', { timeout: 90_000 }, async (t) => {
  let broker = await startBroker();
  t.after(() => broker.stop());
  const s = await device(t), p = await device(t);
  const topic = T('resub', 'x');
  await call(s, 'connect', 'c', { brokers: [broker.url] });
  await call(s, 'sub', 'c', topic, 1);
  await call(p, 'connect', 'c', { brokers: [broker.url] });
  await call(p, 'pub', 'c', topic, 'before', { qos: 1 });
  await call(s, 'waitTexts', 'c', topic, ['before'], 10_000);

  await broker.stop(); // no persistence: the broker forgets every subscription
  const sd = await call(s, 'waitEvent', 'c', 'disconnected', { ms: 10_000 });
  const pd = await call(p, 'waitEvent', 'c', 'disconnected', { ms: 10_000 });
  broker = await startBroker({ port: broker.port });
  const e = await call(s, 'waitEvent', 'c', 'connected', { from: sd.index + 1, ms: 20_000 });
  assert.equal(e.url, broker.url, "'connected' event carries the url");
  await call(p, 'waitEvent', 'c', 'connected', { from: pd.index + 1, ms: 20_000 });
  // The SUBACK after the reconnect is not observable through the API: probe
  // until a message gets through (15 s deadline).
  const until = Date.now() + 15_000;
  let n = 0, ok = false;
  while (!ok && Date.now() < until) {
    await call(p, 'pub', 'c', topic, `probe-${n++}`, { qos: 1 });
    ok = await call(s, 'waitCount', 'c', topic, 2, 500).then(() => true, () => false);
  }
  assert.ok(ok, `no message reached the resubscribed subscriber within 15 s (${n} probes)`);
  noPageErrors(s, p);
});

test('failover: unreachable preferred broker → fallback; preferred back → switches to it; preferred dies → fallback', { timeout: 90_000 }, async (t) => {
  const fallback = await privateBroker(t);
  const portA = await freePort();
  const urlA = `ws://127.0.0.1:${portA}`;
  const d = await device(t);
  const topic = T('failover', 'x');
  const t0 = Date.now();
  const r = await call(d, 'connect', 'c', { brokers: [urlA, fallback.url], connectTimeoutMs: 2000, probeIntervalMs: 1000 });
  assert.deepEqual(r, { url: fallback.url, connected: true }, 'connected to the fallback');
  const tConnect = Date.now() - t0;
  assert.ok(tConnect < 10_000, `connect() took ${tConnect} ms with the preferred broker down`);
  await call(d, 'sub', 'c', topic, 1);

  const preferred = await startBroker({ port: portA });
  t.after(() => preferred.stop());
  const t1 = Date.now();
  const e = await call(d, 'waitEvent', 'c', 'connected', { url: urlA, ms: 15_000 });
  const tBack = Date.now() - t1;
  assert.equal(e.url, urlA);
  const st = await call(d, 'state', 'c');
  assert.equal(st.url, urlA, 'url is the preferred broker after switching back');
  assert.equal(st.connected, true);

  // Traffic now goes through the preferred broker, and the subscription moved with it.
  const o = await device(t);
  await call(o, 'connect', 'c', { brokers: [urlA] });
  await call(o, 'sub', 'c', topic, 1);
  await call(d, 'pub', 'c', topic, 'via-preferred', { qos: 1 });
  await call(o, 'waitTexts', 'c', topic, ['via-preferred'], 10_000);
  await call(d, 'waitTexts', 'c', topic, ['via-preferred'], 10_000);

  // The preferred broker dies: back to the fallback.
  const before = (await call(d, 'events', 'c')).length;
  const t2 = Date.now();
  await preferred.stop();
  const back = await call(d, 'waitEvent', 'c', 'connected', { url: fallback.url, from: before, ms: 15_000 });
  t.diagnostic(`connect with the preferred broker down ${tConnect} ms; back to the preferred ${tBack} ms after it started; ` +
    `to the fallback ${Date.now() - t2} ms after the preferred stopped`);
  assert.equal(back.url, fallback.url);
  assert.equal((await call(d, 'state', 'c')).url, fallback.url);
  noPageErrors(d, o);
});

test('invalid calls are refused with VenueMeshError codes', { timeout: 60_000 }, async (t) => {
  const d = await device(t);
  const isErr = (r, codes, what) => {
    assert.equal(r.ok, false, `${what} must fail`);
    assert.equal(r.name, 'VenueMeshError', `${what}: ${r.name}: ${r.message}`);
    assert.ok(codes.includes(r.code), `${what}: code ${r.code} (${r.message}), want one of ${codes}`);
  };
  isErr(await call(d, 'tryConnect', { brokers: [] }), ['INVALID_OPTIONS'], 'connect with no broker');
  isErr(await call(d, 'tryConnect', { brokers: ['http://127.0.0.1:1/'] }), ['INVALID_OPTIONS'], 'connect to an http:// url');
  await call(d, 'connect', 'c', { brokers: [BROKER] });
  const bad = ['INVALID_ARGUMENT', 'INVALID_OPTIONS'];
  isErr(await call(d, 'tryCall', 'c', 'publish', [T('a', '+', 'b'), 'x']), bad, 'publish to a topic with +');
  isErr(await call(d, 'tryCall', 'c', 'publish', [T('a', '#'), 'x']), bad, 'publish to a topic with #');
  isErr(await call(d, 'tryCall', 'c', 'publish', ['', 'x']), bad, 'publish to an empty topic');
  isErr(await call(d, 'tryCall', 'c', 'publish', [T('a'), 'x', { qos: 3 }]), bad, 'publish at QoS 3');
  isErr(await call(d, 'trySub', 'c', T('a', '#', 'b')), bad, 'subscribe to a/#/b');
  isErr(await call(d, 'trySub', 'c', T('a', 'b+')), bad, 'subscribe to a/b+');
  // Still usable after the refusals.
  await call(d, 'sub', 'c', T('still'), 1);
  await call(d, 'pub', 'c', T('still'), 'ok', { qos: 1 });
  await call(d, 'waitTexts', 'c', T('still'), ['ok'], 10_000);
  await call(d, 'close', 'c');
  const st = await call(d, 'state', 'c');
  assert.equal(st.connected, false, 'connected is false after close()');
  isErr(await call(d, 'tryCall', 'c', 'publish', [T('a'), 'x', { qos: 1 }]), ['CLOSED'], 'publish after close()');
  noPageErrors(d);
});

// What a broken or hostile "broker" may send after CONNACK. MQTT 3.1.1 says
// the client must close the network connection (§4.8, 1.5.3, 2.2.2, 3.3.1-4);
// the page must not crash (a wasm panic aborts the module), and the client
// must reconnect and work with a sane broker afterwards.
const MALFORMED = {
  'reserved packet type 0': [0x00, 0x00],
  'reserved packet type 15': [0xf0, 0x00],
  'remaining length of 5 bytes': [0x30, 0xff, 0xff, 0xff, 0xff, 0x01],
  'PUBLISH whose topic length runs past the packet': [0x30, 0x03, 0x00, 0x10, 0x61],
  'PUBLISH with an ill-formed UTF-8 topic': [0x30, 0x05, 0x00, 0x02, 0xc3, 0x28, 0x61],
  'PUBLISH with QoS 3': [0x36, 0x05, 0x00, 0x01, 0x61, 0x00, 0x01],
  'PUBREL with wrong fixed-header flags': [0x60, 0x02, 0x00, 0x01],
};
for (const [name, bytes] of Object.entries(MALFORMED)) {
  test(`malformed input from the broker: ${name} → client closes, survives, reconnects`, { timeout: 60_000 }, async (t) => {
    const fake = await startFakeBroker((conn) => {
      conn.onPacket = (p) => {
        if (p.type !== 1) return; // CONNECT
        conn.send(CONNACK_OK);
        if (conn.index === 0) setTimeout(() => conn.send(bytes), 100);
      };
    });
    t.after(() => fake.close());
    const d = await device(t);
    await call(d, 'connect', 'c', { brokers: [fake.url] });
    const first = await fake.waitConnections(1);
    await first.waitClosed(10_000);
    const gone = await call(d, 'waitEvent', 'c', 'disconnected', { ms: 10_000 });
    const second = await fake.waitConnections(2, 20_000);
    await call(d, 'waitEvent', 'c', 'connected', { from: gone.index + 1, ms: 10_000 });
    await call(d, 'pub', 'c', 'after/malformed', 'still alive', { qos: 0 });
    const pub = await second.waitPacket(3, 10_000);
    const tlen = pub.body.readUInt16BE(0);
    assert.equal(pub.body.subarray(2, 2 + tlen).toString(), 'after/malformed');
    assert.equal(pub.body.subarray(2 + tlen).toString(), 'still alive');
    noPageErrors(d);
  });
}

// Coalescing (issue #20): a burst made in one task leaves in frames of at most
// 16 KiB plus one packet (COALESCE_LIMIT in src/mqtt/client.rs), several
// PUBLISH packets per frame, and the broker (Mosquitto, or Aedes in e2e-aedes)
// splits them back into messages, each once, in order.
for (const qos of [0, 1]) {
  test(`a burst of publishes in one task leaves in ~16 KiB frames and arrives whole, in order, at QoS ${qos}`, { timeout: 90_000 }, async (t) => {
    const a = await device(t), b = await device(t);
    // Counts the frames the publisher page sends (sizes), from before connect.
    await a.page.evaluate(() => {
      const send = WebSocket.prototype.send;
      window.__frames = [];
      WebSocket.prototype.send = function (d) { window.__frames.push(d.byteLength ?? d.length); return send.call(this, d); };
    });
    await call(a, 'connect', 'c', { brokers: [BROKER] });
    await call(b, 'connect', 'c', { brokers: [BROKER] });
    const topic = T('burst', `q${qos}`);
    await call(b, 'sub', 'c', topic, qos);
    // QoS 1: 1,000, the client's inflight window (more would wait for PUBACKs)
    // and the test broker's queue per subscriber (Mosquitto's default drops
    // QoS 1 messages past 1,000 queued for a slow subscriber).
    const count = qos ? 1_000 : 2_000;
    const pad = '.'.repeat(190);
    const before = await a.page.evaluate(() => window.__frames.length);
    await call(a, 'pubMany', 'c', topic, pad, 0, count, { qos });
    assert.deepEqual(await call(a, 'settle', 'c', 30_000), [], 'every publish promise resolves');
    const got = await call(b, 'waitCount', 'c', topic, count, 30_000);
    await sleep(300); // a duplicate would arrive by now
    assert.equal((await call(b, 'messages', 'c', topic)).length, count, 'each message exactly once');
    assert.deepEqual(got.map((m) => m.text), Array.from({ length: count }, (_, i) => `${pad}${i}`), 'in order');
    // ~217 B a packet: 2,000 leave as 26 or more frames of 16 KiB (+ under one
    // packet) and one with the rest; 1,000 as 13 and the rest.
    const frames = (await a.page.evaluate(() => window.__frames)).slice(before);
    const what = `frames sent: ${frames.length} (${frames.join(', ')})`;
    const full = frames.filter((n) => n >= 16_384);
    assert.ok(full.length >= (qos ? 13 : 26), what);
    assert.ok(frames.every((n) => n < 16_384 + 300), `no frame over the limit + one packet; ${what}`);
    // The rest of the burst in one frame (2-byte frames are PINGREQs: the
    // client measures the RTT after connecting).
    assert.ok(frames.filter((n) => n > 2).length <= full.length + 1, what);
    noPageErrors(a, b);
  });
}

test('several packets in one frame and a packet split across frames from the broker all arrive, in order', { timeout: 60_000 }, async (t) => {
  const fake = await startFakeBroker((conn) => {
    conn.onPacket = (p) => {
      if (p.type === 1) conn.send(CONNACK_OK);
      if (p.type === 8) { // SUBSCRIBE: SUBACK, then the messages
        conn.send(Buffer.from([0x90, 3, p.body[0], p.body[1], 0]));
        const str = (s) => Buffer.concat([Buffer.from([0, Buffer.byteLength(s)]), Buffer.from(s)]);
        const publish = (text) => { const body = Buffer.concat([str('multi'), Buffer.from(text)]); return Buffer.concat([Buffer.from([0x30, body.length]), body]); };
        const all = Buffer.concat(Array.from({ length: 50 }, (_, i) => publish(`m${i}`)));
        // One frame with 30 whole packets and half of the 31st, then the rest.
        const cut = publish('m0').length * 30 + 4;
        setTimeout(() => { conn.send(all.subarray(0, cut)); conn.send(all.subarray(cut)); }, 50);
      }
    };
  });
  t.after(() => fake.close());
  const d = await device(t);
  await call(d, 'connect', 'c', { brokers: [fake.url] });
  await call(d, 'sub', 'c', 'multi', 0);
  const got = await call(d, 'waitCount', 'c', 'multi', 50, 10_000);
  assert.deepEqual(got.map((m) => m.text), Array.from({ length: 50 }, (_, i) => `m${i}`));
  // The payload handed to the app is the message's bytes only, also when it
  // shares its frame with others (no view into the whole frame).
  assert.deepEqual(got.map((m) => Buffer.from(m.b64, 'base64').length), got.map((m) => m.text.length));
  noPageErrors(d);
});
