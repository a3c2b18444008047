// Seed 004's venue (issue #21): a "local" Mosquitto bridged to a "cloud"
// Mosquitto, both from the shipped configs (config/bridge-local.conf,
// config/bridge-cloud.conf: accounts, ACLs, size limit), the bridge running
// through a TCP proxy the test can cut. Devices are split between the
// brokers: the kiosk and the POS list the local broker first, the phone knows
// only the cloud, the iPad lists the cloud first. The reference ingest reads
// the cloud. WebRTC is off, so everything between the two halves crosses the
// bridge. Scenarios, in order on one venue:
//   1. one mesh: one hub, replication to peer_ack, upload to cloud_ack, room
//      messages once each, and no message loops between the brokers;
//   2. the local broker dies: its devices move to the cloud broker and keep
//      going; it returns: they switch back (the 30 s probe);
//   3. the bridge breaks: each side keeps working; it returns: one mesh again;
// and through all of it, nothing acknowledged is lost or stored twice.
// Times are printed (`#` lines), not asserted; scripts/bench brokers measures them.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import mqtt from 'mqtt';
import { launch, startLockedBroker, startIngest, startLinkProxy, meshMember, freePort, sleep, waitFor } from './lib.mjs';

const VENUE = `e2e-bridge-${Date.now().toString(36)}${randomBytes(2).toString('hex')}`;
const PASS = randomBytes(18).toString('base64url');
const auth = { username: VENUE, password: PASS };

let browser, cloud, local, proxy, ingest, localPorts;
const m = {}; // kiosk, pos, phone, ipad
const enqueued = new Set();

async function startLocal() {
  local = await startLockedBroker({
    conf: 'config/bridge-local.conf', accounts: { [VENUE]: PASS }, ...localPorts,
    vars: { VENUE, BRIDGE_PASSWORD: PASS }, bridgeAddress: `127.0.0.1:${proxy.port}`,
  });
}

before(async () => {
  browser = await launch();
  cloud = await startLockedBroker({ conf: 'config/bridge-cloud.conf', accounts: { [VENUE]: PASS } });
  proxy = await startLinkProxy(cloud.tcp); // the bridge's path to the cloud
  localPorts = { port: await freePort(), tcp: await freePort() };
  await startLocal();
  ingest = await startIngest({ venue: VENUE, tcp: cloud.tcp, auth });
  const opts = { drain: '500', webrtc: '0' };
  const both = `${local.url},${cloud.url}`;
  m.kiosk = await meshMember(browser, both, VENUE, 'kiosk', opts, { auth });
  m.pos = await meshMember(browser, both, VENUE, 'pos', opts, { auth });
  m.phone = await meshMember(browser, cloud.url, VENUE, 'phone', opts, { auth });
  m.ipad = await meshMember(browser, `${cloud.url},${local.url}`, VENUE, 'ipad', { ...opts, charging: '1' }, { auth });
  for (const d of Object.values(m)) {
    await d.page.evaluate(() => {
      window.roomMessages = [];
      window.mesh.on('message', (e) => window.roomMessages.push(`${e.from}:${e.id}:${e.text}`));
      window.mesh.joinRoom('chat');
    });
  }
});
after(async () => {
  await browser?.close();
  await ingest?.stop();
  await proxy?.stop();
  await local?.stop();
  await cloud?.stop();
});

const all = () => Object.values(m);
const hubOf = (d) => d.page.evaluate(() => window.mesh.hub);
const urlOf = (d) => d.page.evaluate(() => window.mesh.getDetailedStats().broker.url);
const counts = (d) => d.page.evaluate(() => window.mesh.queue.countByStatus());
const detail = () => `ingest stderr:\n${ingest.stderr.slice(-1500)}\nlocal:\n${local?.stderr.slice(-1500)}\ncloud:\n${cloud.stderr.slice(-800)}`;
const agree = (devices, hub, ms = 15_000) => waitFor(async () => (await Promise.all(devices.map(hubOf))).every((h) => h === hub),
  ms, `${devices.map((d) => d.kind)} agree on hub ${hub}`, { detail });

async function sell(d, n, tag) {
  const ids = await d.page.evaluate(async ([n, tag]) => {
    const ids = [];
    for (let i = 0; i < n; i++) ids.push(await window.mesh.enqueue('sale', JSON.stringify({ tag, i })));
    return ids;
  }, [n, tag]);
  for (const id of ids) enqueued.add(id);
  return ids;
}

/** The ingest holds every sale made so far, each once, and every device marks its own cloud_ack. */
// A CLOUD_ACK published while a device is between brokers never reaches it (clean
// sessions): docs/replication.md's safety net re-offers such a command to the hub
// after 60 s and the hub answers "cloud has it". Hence `deviceMs` of 90 s where a
// device switches brokers while sales are being acknowledged.
async function everythingCloudAcked(what, deviceMs = 30_000) {
  const t0 = Date.now();
  await waitFor(() => ingest.query().count >= enqueued.size, 30_000, `${what}: the ingest holds ${enqueued.size} sales`, { detail });
  const q = ingest.query();
  assert.equal(q.count, enqueued.size, `${what}: no sale stored twice, none extra`);
  assert.deepEqual(new Set(q.ids), enqueued, `${what}: every acknowledged sale is in the cloud`);
  let seen;
  const acked = waitFor(async () => (seen = await Promise.all(all().map(counts))).every((c) => c.pending === 0 && c.peerAck === 0 && c.failed === 0),
    deviceMs, `${what}: every device marks its sales cloud_ack`, { detail: () => `${all().map((d, i) => `${d.kind} ${JSON.stringify(seen?.[i])}`).join('\n')}\n${detail()}` });
  await acked;
  console.log(`# ${what}: every device cloud_ack ${Date.now() - t0} ms after the ingest held all ${enqueued.size}`);
}

/** Each device sends `n` room messages; every other device's app gets each exactly once. */
async function roomRound(tag, n = 5) {
  const sent = [];
  for (const d of all()) {
    const ids = await d.page.evaluate(([tag, n]) => Array.from({ length: n }, (_, i) => window.mesh.send('chat', `${tag}-${i}`)), [tag, n]);
    for (const [i, id] of ids.entries()) sent.push(`${d.id}:${id}:${tag}-${i}`);
  }
  for (const d of all()) {
    const want = sent.filter((s) => !s.startsWith(`${d.id}:`)).sort();
    const got = () => d.page.evaluate((tag) => window.roomMessages.filter((r) => r.includes(`:${tag}-`)), tag);
    await waitFor(async () => (await got()).length >= want.length, 15_000, `${d.kind} gets the ${tag} room messages`, { detail });
    await sleep(300); // a duplicate would arrive by now
    assert.deepEqual((await got()).sort(), want, `${d.kind}: every ${tag} room message exactly once`);
  }
}

test('devices split between the local and the cloud broker form one mesh', { timeout: 90_000 }, async () => {
  const want = [local.url, local.url, cloud.url, cloud.url];
  let seen;
  await waitFor(async () => JSON.stringify(seen = await Promise.all(all().map(urlOf))) === JSON.stringify(want), 15_000,
    'two devices are connected to each broker', { detail: () => `${JSON.stringify(seen)}\n${detail()}` });
  await agree(all(), m.kiosk.id);
  assert.equal((await m.kiosk.page.evaluate(() => window.events.filter((e) => e.ev === 'becomeHub'))).length, 1, 'one hub, once');
  // The phone (cloud) sells: replicas on the hub (local side) make it peer_ack, the hub's upload crosses the bridge.
  await sell(m.phone, 10, 'split-phone');
  await sell(m.pos, 10, 'split-pos');
  await everythingCloudAcked('split');
  await roomRound('split');
  // No loops, below the library's own deduplication: one publish on either broker is
  // delivered exactly once on each, also after the bridge had time to echo it back.
  const watchers = await Promise.all([local, cloud].map((b) => mqtt.connectAsync(b.url, { ...auth, reconnectPeriod: 0 })));
  try {
    const seen = watchers.map(() => []);
    for (const [i, w] of watchers.entries()) {
      w.on('message', (topic, payload) => { if (topic.includes('/app/loop-check/')) seen[i].push(`${topic} ${payload}`); });
      await w.subscribeAsync(`vm/${VENUE}/app/loop-check/#`, { qos: 1 });
    }
    await watchers[0].publishAsync(`vm/${VENUE}/app/loop-check/from-local`, 'x', { qos: 1 });
    await watchers[1].publishAsync(`vm/${VENUE}/app/loop-check/from-cloud`, 'y', { qos: 1 });
    await sleep(2_000);
    const want = [`vm/${VENUE}/app/loop-check/from-cloud y`, `vm/${VENUE}/app/loop-check/from-local x`];
    assert.deepEqual(seen.map((s) => s.sort()), [want, want], 'each message exactly once on each broker: no loop');
  } finally {
    await Promise.all(watchers.map((w) => w.endAsync(true)));
  }
});

test('the local broker dies: its devices move to the cloud broker; it returns: they switch back', { timeout: 240_000 }, async () => {
  const stoppedAt = Date.now();
  await local.stop();
  local = null;
  const moved = {};
  await waitFor(async () => {
    for (const d of [m.kiosk, m.pos]) if (!moved[d.kind] && (await urlOf(d)) === cloud.url) moved[d.kind] = Date.now() - stoppedAt;
    return Object.keys(moved).length === 2;
  }, 15_000, 'the kiosk and the POS are on the cloud broker', { detail });
  console.log(`# local broker down → on the cloud broker after: kiosk ${moved.kiosk} ms, pos ${moved.pos} ms (the library's connect timeout is 2 s)`);
  await agree(all(), m.kiosk.id);
  await sell(m.pos, 10, 'local-down');
  await sell(m.phone, 5, 'local-down-phone');
  await everythingCloudAcked('local broker down', 90_000);

  const backAt = Date.now();
  await startLocal();
  const back = {};
  await waitFor(async () => {
    for (const d of [m.kiosk, m.pos]) if (!back[d.kind] && (await urlOf(d)) === local.url) back[d.kind] = Date.now() - backAt;
    return Object.keys(back).length === 2;
  }, 45_000, 'the kiosk and the POS are back on the local broker', { detail });
  console.log(`# local broker back → devices on it again after: kiosk ${back.kiosk} ms, pos ${back.pos} ms (probe every 30 s)`);
  assert.equal(await urlOf(m.phone), cloud.url, 'the phone stays on the cloud');
  await agree(all(), m.kiosk.id);
  await sell(m.pos, 10, 'local-back');
  await sell(m.phone, 5, 'local-back-phone');
  await everythingCloudAcked('local broker back');
  await roomRound('back');
});

test('the bridge breaks: each side keeps working; it returns: one mesh again', { timeout: 150_000 }, async () => {
  // Cut the bridge's path: open connections go silent and are closed, new ones go nowhere.
  proxy.blackhole();
  proxy.reset();
  // The cloud side no longer hears the kiosk: it elects its own hub (the charging iPad).
  await agree([m.phone, m.ipad], m.ipad.id, 30_000);
  assert.equal(await hubOf(m.pos), m.kiosk.id, 'the local side keeps its hub');
  const localSide = await sell(m.pos, 10, 'split-brain-local');
  const cloudSide = await sell(m.phone, 10, 'split-brain-cloud');
  // Each side replicates on its own (a majority of 3 = 2 devices per side).
  await waitFor(async () => (await counts(m.pos)).pending === 0 && (await counts(m.phone)).pending === 0, 20_000,
    'each side\'s sales reach peer_ack', { detail });
  // The cloud side's hub uploads to the ingest; the local side's cannot reach it.
  await waitFor(() => cloudSide.every((id) => ingest.query().ids.includes(id)), 20_000, 'the cloud side\'s sales are in the cloud', { detail });
  assert.ok(!localSide.some((id) => ingest.query().ids.includes(id)), 'the local side\'s sales cannot be in the cloud yet');

  const healAt = Date.now();
  proxy.restore();
  const hub = await waitForOneHub();
  console.log(`# bridge back → one hub (${Object.values(m).find((d) => d.id === hub)?.kind}) again after ${Date.now() - healAt} ms`);
  await everythingCloudAcked('bridge healed');
  await roomRound('healed');
  for (const d of all()) assert.deepEqual(d.errors, [], `${d.kind}: no page errors`);
});

/** After a split brain: the hub every device ends up agreeing on. */
async function waitForOneHub() {
  let hub = null;
  await waitFor(async () => {
    const hubs = new Set(await Promise.all(all().map(hubOf)));
    hub = hubs.size === 1 ? [...hubs][0] : null;
    return hub !== null;
  }, 30_000, 'every device agrees on one hub', { detail });
  return hub;
}

// Seed 004's events through the library (README "Seed 004's events"):
//   waitlist/current   retained, QoS 1, MqttClient.publish({ retain: true }): a device gets it at once on connect;
//   payments/completed VenueMesh.send (live, to the store device) + VenueMesh.enqueue (durable, to the cloud):
//                      exactly once for the receiving app, keyed by (sender, message id) and by command id,
//                      even when the sender switches brokers in the middle — MQTT QoS 2 cannot promise that
//                      across two brokers: its exactly-once state lives in one broker session.
test('seed 004: the retained waitlist at once on connect; payments/completed exactly once across a broker switch',
  { timeout: 180_000 }, async () => {
    const topic = `vm/${VENUE}/app/waitlist/current`;
    const waitlist = JSON.stringify({ clients: ['Ana', 'Ben', 'Chloé'], updatedAt: Date.now() });
    await m.kiosk.page.evaluate(async ([url, auth, topic, body]) => {
      const { MqttClient } = await import('/pkg/venuemesh.js');
      const c = await MqttClient.connect({ brokers: [url], ...auth });
      await c.publish(topic, body, { qos: 1, retain: true });
      c.close();
    }, [local.url, auth, topic, waitlist]);
    // A device connecting to the cloud broker afterwards: the waitlist crossed the bridge and is retained there.
    const got = await m.phone.page.evaluate(async ([url, auth, topic]) => {
      const { MqttClient } = await import('/pkg/venuemesh.js');
      const c = await MqttClient.connect({ brokers: [url], ...auth });
      const t0 = performance.now();
      const msg = await new Promise((resolve, reject) => {
        setTimeout(() => reject(new Error('no retained waitlist within 5 s')), 5_000);
        c.subscribe(topic, (_t, payload, info) => resolve({ text: new TextDecoder().decode(payload), retain: info.retain, qos: info.qos }), { qos: 1 });
      });
      c.close();
      return { ...msg, ms: performance.now() - t0 };
    }, [cloud.url, auth, topic]);
    console.log(`# retained waitlist on the cloud broker ${got.ms.toFixed(1)} ms after subscribing`);
    assert.deepEqual({ text: got.text, retain: got.retain, qos: got.qos }, { text: waitlist, retain: true, qos: 1 }, 'the current waitlist, retained');

    // payments/completed from the POS (local broker) to the phone (cloud broker); the local broker dies halfway.
    const N = 40;
    const sending = m.pos.page.evaluate(async ([to, n]) => {
      const out = [];
      for (let i = 0; i < n; i++) {
        const payment = JSON.stringify({ event: 'payments/completed', paymentId: `pay-${i}`, cents: 1000 + i });
        out.push({ id: window.mesh.send(to, payment), command: await window.mesh.enqueue('payments/completed', payment) });
        await new Promise((r) => setTimeout(r, 50));
      }
      return out;
    }, [m.phone.id, N]);
    await sleep(800);
    if (local) { await local.stop(); local = null; }
    const sent = await sending;
    for (const s of sent) enqueued.add(s.command);
    await waitFor(async () => (await urlOf(m.pos)) === cloud.url, 15_000, 'the POS switched to the cloud broker', { detail });
    const payments = () => m.phone.page.evaluate((from) => window.roomMessages.filter((r) => r.startsWith(`${from}:`) && r.includes('payments/completed')), m.pos.id);
    await waitFor(async () => (await payments()).length >= N, 30_000, `the phone's app got ${N} payments`, { detail });
    await sleep(500); // a duplicate would arrive by now
    const ids = (await payments()).map((r) => JSON.parse(r.slice(r.indexOf(':{') + 1)).paymentId);
    assert.deepEqual(ids, Array.from({ length: N }, (_, i) => `pay-${i}`), 'each payment exactly once, in order');
    await everythingCloudAcked('payments across the switch', 90_000);
  });
