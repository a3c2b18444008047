// e2e engines: webkit
// A venue of WebKit (Safari's engine: Debian's WebKitGTK MiniBrowser over
// WebDriver, ./webkit.mjs) and Chromium pages on one broker. This WebKit has
// no RTCPeerConnection, no Battery and no Network Information API and no
// navigator.storage.persist — close to what the library must cope with on
// iOS, and a fair test of every fallback. Together they elect one hub,
// replicate commands to peer_ack, drain them through the hub to the
// reference ingest (cloud_ack), replace a WebKit hub that goes away, and
// exchange messages over the broker where no data channel can exist, which
// getDetailedStats().routes says.
import { test, before, after, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { launchChromium, launchWebKit, startBroker, startIngest, sleep, meshMember, waitFor as waitUntil,
  assertExactlyOnce, assertSenderOrder } from './lib.mjs';


let webkit, chromium, broker, ingest;
before(async () => {
  [webkit, chromium, broker] = await Promise.all([launchWebKit(), launchChromium(), startBroker()]);
});
after(async () => {
  await ingest?.stop();
  await Promise.all([webkit?.close(), chromium?.close()]);
  await broker?.stop();
});

const waitFor = (f, ms, what) => waitUntil(f, ms, what, { detail: () => (ingest ? `ingest stderr:\n${ingest.stderr.slice(-2000)}` : '') });
let open = []; // this test's pages, closed when it ends (a failed test must free its WebKit drivers)
const member = async (browser, venue, kind, extra = {}, opts = {}) => {
  const m = await meshMember(browser, broker.url, venue, kind, extra, opts);
  open.push(m);
  return m;
};
afterEach(async () => { await close(open).catch(() => {}); open = []; });
const hubOf = (m) => m.page.evaluate(() => window.mesh.hub);
const stats = (m) => m.page.evaluate(() => window.mesh.getDetailedStats());
const counts = (m) => m.page.evaluate(() => window.mesh.queue.countByStatus());
const label = (m) => `${m.page.engine ?? 'chromium'} ${m.kind}`;
const close = (ms) => Promise.all(ms.map((m) => m.context.close()));
/** `n` commands enqueued on page `m`, each awaited (committed); their ids. */
const enqueue = (m, n, tag) => m.page.evaluate(async ([n, tag]) => {
  const ids = [];
  for (let i = 0; i < n; i++) ids.push(await window.mesh.enqueue('sale', JSON.stringify({ tag, i, total: 4.2 })));
  return ids;
}, [n, tag]);

async function agreeOn(members, hub, ms = 15_000) {
  await waitFor(async () => (await Promise.all(members.map(hubOf))).every((h) => h === hub.id), ms,
    `${members.map(label).join(', ')} agree that ${label(hub)} is the hub`);
}

/** Every becomeHub across pages is in a distinct term, claimed by the page itself. */
async function assertOneHubPerTerm(members) {
  const seen = new Map();
  for (const m of members) {
    for (const e of await m.page.evaluate(() => window.events.filter((x) => x.ev === 'becomeHub'))) {
      const key = `${e.term.number}/${e.term.hub}`;
      assert.equal(e.term.hub, m.id, `${label(m)} became hub only in its own term`);
      assert.ok(!seen.has(key), `term ${key} acted twice`);
      seen.set(key, m.id);
    }
  }
  return seen;
}

test('two WebKit pages and a Chromium page: one hub, peer_ack, cloud_ack through the ingest; a WebKit hub that closes is replaced',
  { timeout: 150_000 }, async () => {
    const venue = `e2e-wk-${Date.now().toString(36)}`;
    ingest = await startIngest({ venue, tcp: broker.tcp });
    const opts = { drain: '500', batch: '50' };
    // Scores: kiosk > POS > charging iPad, so the WebKit kiosk is the hub and the WebKit POS the next.
    const kiosk = await member(webkit, venue, 'kiosk', opts);
    const pos = await member(webkit, venue, 'pos', opts);
    const ipad = await member(chromium, venue, 'ipad', { ...opts, charging: '1' });
    const all = [kiosk, pos, ipad];
    await agreeOn(all, kiosk);
    const s = await stats(kiosk);
    assert.equal(s.role, 'hub');
    assert.deepEqual(s.peers.map((p) => p.device).sort(), [pos.id, ipad.id].sort());

    // The cloud pauses: commands from every page stop at peer_ack (a majority
    // of 3 holds them; with three devices each holds all 60, replicas included).
    ingest.pause();
    const first = (await Promise.all(all.map((m, i) => enqueue(m, 20, `a${i}`)))).flat();
    await waitFor(async () => (await Promise.all(all.map(counts))).every((c) => c.pending === 0 && c.peerAck === 60), 20_000,
      'every page holds the 60 commands at peer_ack');
    for (const m of all) assert.equal((await stats(m)).replication.replicasStored, 40, `${label(m)} stored the others' 40 in IndexedDB`);

    // The cloud is back: the WebKit hub uploads, every page marks its commands cloud_ack.
    ingest.resume();
    await waitFor(() => ingest.query().count >= 60, 30_000, 'the ingest holds the 60 commands');
    await waitFor(async () => (await Promise.all(all.map(counts))).every((c) => c.cloudAck === 60 && c.peerAck === 0 && c.pending === 0),
      20_000, 'every page marks the 60 commands cloud_ack');
    assert.deepEqual(new Set(ingest.query().ids), new Set(first), 'the ingest holds exactly the 60 enqueued ids');

    // The WebKit hub's page goes away: the WebKit POS takes over and drains what follows.
    await kiosk.context.close();
    await agreeOn([pos, ipad], pos);
    const second = (await Promise.all([enqueue(pos, 15, 'b0'), enqueue(ipad, 15, 'b1')])).flat();
    await waitFor(() => ingest.query().count >= 90, 30_000, 'the ingest holds the 30 commands enqueued after the failover');
    const got = ingest.query();
    assert.equal(got.count, 90, 'exactly 90 rows');
    assert.deepEqual(new Set(got.ids), new Set([...first, ...second]), 'each command once');
    await waitFor(async () => (await Promise.all([pos, ipad].map(counts))).every((c) => c.pending === 0 && c.peerAck === 0),
      20_000, 'the survivors mark everything cloud_ack');
    assert.equal((await stats(pos)).role, 'hub');
    const terms = await assertOneHubPerTerm([pos, ipad]);
    assert.ok([...terms.values()].includes(pos.id), 'the WebKit POS became hub in a term of its own');
    for (const m of all) assert.deepEqual(m.errors.map(String), [], `${label(m)}: uncaught errors`);
    await close([pos, ipad]);
    await ingest.stop();
    ingest = null;
  });

test('without RTCPeerConnection the mesh uses the broker and says so in getDetailedStats().routes; Chromium pages still pair over WebRTC',
  { timeout: 90_000 }, async () => {
    const venue = `e2e-wkrt-${Date.now().toString(36)}`;
    const routing = { page: 'routing' };
    const wkA = await member(webkit, venue, 'kiosk', { room: 'chat' }, routing);
    const wkB = await member(webkit, venue, 'pos', { room: 'chat' }, routing);
    const crA = await member(chromium, venue, 'ipad', { room: 'chat' }, routing);
    const crB = await member(chromium, venue, 'phone', { room: 'chat' }, routing);
    const all = [wkA, wkB, crA, crB];
    const webkits = new Set([wkA.id, wkB.id]);
    await waitFor(async () => (await Promise.all(all.map(stats))).every((s) => s.peers.length === 3), 15_000, 'every page sees the three others');

    // What each page says about WebRTC: unavailable in WebKit, on in Chromium.
    for (const m of [wkA, wkB]) {
      assert.equal(await m.page.evaluate(() => typeof RTCPeerConnection), 'undefined', 'this WebKit has no RTCPeerConnection');
      assert.equal((await stats(m)).routes.webrtc, 'unavailable', `${label(m)}: routes.webrtc`);
    }
    for (const m of [crA, crB]) assert.equal((await stats(m)).routes.webrtc, 'on', `${label(m)}: routes.webrtc`);
    // The two Chromium pages open a data channel to each other…
    await waitFor(async () => (await crA.page.evaluate((p) => window.routeOf(p)?.rtcUp, crB.id))
      && (await crB.page.evaluate((p) => window.routeOf(p)?.rtcUp, crA.id)), 20_000, 'the Chromium pages have a data channel');

    const sent = [];
    for (const m of all) for (const id of await m.page.evaluate(() => Array.from({ length: 10 }, (_, i) => window.mesh.send('chat', `mix-${i}`)))) sent.push([m.id, id]);
    const records = (m) => m.page.evaluate(() => window.received.filter((r) => r.text?.startsWith('mix-')));
    await waitFor(async () => (await Promise.all(all.map(records))).every((r) => r.length === 30), 20_000, 'every page has the 30 messages of the others');
    // Room traffic that stood still for a few heartbeats: no WebRTC attempt has begun meanwhile.
    await sleep(1_500);
    for (const m of all) {
      const got = await records(m);
      assertExactlyOnce(label(m), got.map((r) => `${r.from}:${r.id}`), sent, m.id);
      assertSenderOrder(label(m), got);
      const r = (await stats(m)).routes;
      for (const p of r.peers) {
        const direct = !webkits.has(m.id) && !webkits.has(p.device); // Chromium ↔ Chromium
        const [rtc, broker] = ['rtc', 'broker'].map((name) => p.routes.find((x) => x.route === name));
        const pair = `${label(m)} → ${p.device.slice(0, 8)}`;
        if (direct) {
          // Which route is cheaper at a given moment is the router's call (a loaded
          // machine can make the broker look faster); that the pair has its data
          // channel and used it is the point.
          assert.ok(rtc.msgsOut > 0 || rtc.msgsIn > 0, `${pair}: traffic on the data channel: ${JSON.stringify(rtc)}`);
        } else {
          // …while every pair with a WebKit page goes through the broker, without trying WebRTC.
          assert.equal(p.rtc, 'idle', `${pair}: no WebRTC attempt`);
          assert.equal(rtc.up, false);
          assert.equal(rtc.msgsOut, 0, `${pair}: nothing sent on a data channel`);
          assert.notEqual(p.best, 'rtc');
          assert.ok(broker.msgsOut > 0 && broker.acked > 0, `${pair}: the room messages went through the broker: ${JSON.stringify(broker)}`);
        }
      }
    }
    for (const m of all) assert.deepEqual(m.errors.map(String), [], `${label(m)}: uncaught errors`);
    await close(all);
  });
