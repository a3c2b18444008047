// The two routing paths the three-page tests do not take, with real pages and
// a real Mosquitto: a room of six devices (too big to mesh: one publish on
// `vm/{venue}/topic/{room}` per message) and two devices that are tabs of one
// browser profile (BroadcastChannel), which keep messaging, electing and
// replicating over the tab route with the broker stopped.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { launch, startBroker, BASE, waitFor, assertExactlyOnce, assertSenderOrder } from './lib.mjs';

let browser, broker;
before(async () => {
  browser = await launch();
  broker = await startBroker();
});
after(async () => {
  await browser?.close();
  await broker?.stop();
});

/** A routing page (pages/routing.mjs) in `context` (a fresh one if none). */
async function member(venue, kind, { context, ...extra } = {}) {
  context ??= await browser.newContext();
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(e));
  const q = new URLSearchParams({ venue, broker: broker.url, kind, hb: '300', ...extra });
  await page.goto(`${BASE}/tests/e2e/pages/routing.html?${q}`);
  await page.waitForFunction(() => window.mesh || window.openError, null, { timeout: 10_000 });
  assert.equal(await page.evaluate(() => window.openError ?? null), null);
  return { context, page, kind, errors, id: await page.evaluate(() => window.mesh.deviceId) };
}

const stats = (m) => m.page.evaluate(() => window.mesh.getDetailedStats());
const send = (m, to, texts) => m.page.evaluate(([to, texts]) => texts.map((t) => window.mesh.send(to, t)), [to, texts]);
const records = (m, prefix) => m.page.evaluate((p) => window.received.filter((r) => r.text?.startsWith(p)), prefix);

test('a room of six devices goes through the broker topic: each message once, in order', { timeout: 90_000 }, async () => {
  const venue = `e2e-bigroom-${Date.now().toString(36)}`;
  const kinds = ['kiosk', 'pos', 'pos', 'ipad', 'phone', 'phone'];
  const all = [];
  for (const kind of kinds) all.push(await member(venue, kind, { room: 'hall' }));
  await waitFor(async () => (await Promise.all(all.map(stats))).every((s) => s.peers.length === 5), 20_000,
    'every page sees the five others');
  const sent = [];
  for (const m of all) for (const id of await send(m, 'hall', Array.from({ length: 8 }, (_, i) => `big-${i}`))) sent.push([m.id, id]);
  await waitFor(async () => (await Promise.all(all.map((m) => records(m, 'big-')))).every((r) => r.length >= 40), 20_000,
    'every page has the 40 messages of the five others');
  for (const m of all) {
    const got = await records(m, 'big-');
    assertExactlyOnce(m.kind, got.map((r) => `${r.from}:${r.id}`), sent, m.id);
    assertSenderOrder(m.kind, got);
    assert.ok(got.every((r) => r.room === 'hall'));
    const s = await stats(m);
    // (Data channels may exist: the first pages met while the room was small.)
    assert.equal(s.routes.counters.roomBroadcasts, 8, `${m.kind}: one broker publish per message, not a copy per member`);
  }
  for (const m of all) assert.deepEqual(m.errors, []);
  await Promise.all(all.map((m) => m.context.close()));
});

test('two devices in one browser profile use the tab route, and keep going on it without a broker',
  { timeout: 90_000 }, async () => {
    const venue = `e2e-tabs-${Date.now().toString(36)}`;
    // One profile, two IndexedDB names: two devices that share a BroadcastChannel.
    // Without WebRTC, the tab is their only route besides the broker.
    const a = await member(venue, 'kiosk', { db: `vm-a-${venue}`, webrtc: '0' });
    const b = await member(venue, 'pos', { db: `vm-b-${venue}`, webrtc: '0', context: a.context });
    assert.notEqual(a.id, b.id);
    const tabUp = async (m, peer) => (await stats(m)).routes.peers.find((p) => p.device === peer)?.routes.find((r) => r.route === 'tab')?.up;
    await waitFor(async () => (await tabUp(a, b.id)) && (await tabUp(b, a.id)), 15_000, 'each page has a tab route to the other');
    await waitFor(async () => (await a.page.evaluate(() => window.mesh.hub)) === a.id && (await b.page.evaluate(() => window.mesh.hub)) === a.id,
      10_000, 'the kiosk is the hub');

    const before = await send(a, b.id, ['tab-0', 'tab-1', 'tab-2']);
    await waitFor(async () => (await records(b, 'tab-')).length === 3, 10_000, 'b got the three messages');
    const viaTab = (await stats(b)).routes.peers.find((p) => p.device === a.id).routes.find((r) => r.route === 'tab');
    assert.ok(viaTab.msgsIn > 0, `b received on the tab route: ${JSON.stringify(viaTab)}`);

    await broker.stop();
    await waitFor(async () => !(await a.page.evaluate(() => window.mesh.connected)), 10_000, 'the pages lose the broker');
    const after = await send(b, a.id, ['tab-offline-0', 'tab-offline-1']);
    await waitFor(async () => (await records(a, 'tab-offline-')).length === 2, 10_000, 'a got the offline messages');
    // Election and replication over the tab: the same hub, and a command held by both (2 of 3).
    const s = await stats(b);
    assert.equal(s.reachable, true);
    assert.equal(s.hub?.hub, a.id, 'the hub stays');
    await b.page.evaluate(() => window.mesh.enqueue('sale', '{"offline":true}'));
    await waitFor(async () => (await b.page.evaluate(() => window.mesh.queue.countByStatus())).peerAck === 1, 10_000,
      'the command is held by both devices');
    assert.ok((await stats(b)).traffic.direct.msgsOut > 0);
    assertExactlyOnce('b', (await records(b, 'tab-')).map((r) => `${r.from}:${r.id}`), before.map((id) => [a.id, id]), b.id);
    assertExactlyOnce('a', (await records(a, 'tab-')).map((r) => `${r.from}:${r.id}`), after.map((id) => [b.id, id]), a.id);
    for (const m of [a, b]) assert.deepEqual(m.errors, []);
    await a.context.close();
  });
