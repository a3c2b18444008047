// Hybrid routing with three real pages (each its own browser context, so
// their BroadcastChannels are apart and they talk over WebRTC or the broker),
// a private Mosquitto the test stops and restarts: data channels come up,
// messages keep flowing over them with the broker stopped, a closed channel
// falls back to the broker, and 1,000 room messages with routes failing and
// recovering reach every other page's app exactly once.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { launch, startBroker, BASE, sleep, waitFor, assertExactlyOnce, assertSenderOrder, assertIceInTestNetwork } from './lib.mjs';

let browser, broker;
const pages = [];
const venue = `e2e-route-${Date.now().toString(36)}`;
before(async () => {
  browser = await launch();
  broker = await startBroker();
});
after(async () => {
  await browser?.close();
  await broker?.stop();
});


async function member(kind) {
  const context = await browser.newContext();
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(e));
  page.on('console', (m) => { if (process.env.VM_E2E_VERBOSE) console.log(`[${kind}] ${m.text()}`); });
  const q = new URLSearchParams({ venue, broker: broker.url, kind, hb: '300', room: 'chat' });
  await page.goto(`${BASE}/tests/e2e/pages/routing.html?${q}`);
  await page.waitForFunction(() => window.mesh || window.openError, null, { timeout: 10_000 });
  assert.equal(await page.evaluate(() => window.openError ?? null), null);
  return { context, page, kind, errors, id: await page.evaluate(() => window.mesh.deviceId) };
}

/** `n` room messages from `m` tagged `tag`, `gapMs` apart; their ids. */
const sendRoom = (m, n, tag, gapMs = 0) => m.page.evaluate(async ([n, tag, gapMs]) => {
  const ids = [];
  for (let i = 0; i < n; i++) {
    ids.push(window.mesh.send('chat', `${tag}-${i}`));
    if (gapMs) await new Promise((r) => setTimeout(r, gapMs));
  }
  return ids;
}, [n, tag, gapMs]);

const received = (m, prefix) => m.page.evaluate((prefix) =>
  window.received.filter((r) => r.text?.startsWith(prefix)).map((r) => `${r.from}:${r.id}`), prefix);

async function allReceived(prefix, sent) {
  for (const m of pages) {
    const want = sent.filter(([from]) => from !== m.id).length;
    if ((await received(m, prefix)).length < want) return false;
  }
  return true;
}

const rtcUpEverywhere = async () => {
  for (const m of pages) {
    for (const o of pages) {
      if (o === m) continue;
      const r = await m.page.evaluate((peer) => window.routeOf(peer), o.id);
      if (!r?.rtcUp) return false;
    }
  }
  return true;
};

test('three pages open data channels to each other', { timeout: 60_000 }, async () => {
  for (const kind of ['kiosk', 'pos', 'ipad']) pages.push(await member(kind));
  await waitFor(async () => {
    for (const m of pages) {
      if ((await m.page.evaluate(() => window.mesh.getDetailedStats().peers.length)) < 2) return false;
    }
    return true;
  }, 15_000, 'every page sees the two others');
  const sent = [];
  for (const m of pages) for (const id of await sendRoom(m, 3, 'hello')) sent.push([m.id, id]);
  await waitFor(rtcUpEverywhere, 20_000, 'every pair has an open data channel');
  // Real data channels, and only between addresses of the run's own network namespace.
  console.log(`data channels use ${(await assertIceInTestNetwork(pages.map((m) => m.page))).join(', ')}`);
  await waitFor(() => allReceived('hello', sent), 10_000, 'hello messages arrived');
  for (const m of pages) assertExactlyOnce(m.kind, await received(m, 'hello'), sent, m.id);
  const stats = await pages[0].page.evaluate(() => window.mesh.getDetailedStats().routes);
  for (const p of stats.peers) {
    const rtc = p.routes.find((r) => r.route === 'rtc');
    assert.equal(rtc.up, true);
    assert.equal(rtc.breaker, 'closed');
  }
});

test('with the broker stopped, messages keep flowing over WebRTC', { timeout: 60_000 }, async () => {
  await waitFor(rtcUpEverywhere, 20_000, 'data channels up');
  await broker.stop();
  await waitFor(async () => !(await pages[0].page.evaluate(() => window.mesh.connected)), 10_000, 'the pages notice');
  const sent = [];
  for (const m of pages) for (const id of await sendRoom(m, 20, 'offline', 10)) sent.push([m.id, id]);
  // Direct messages too (commands between devices).
  const direct = await pages[2].page.evaluate((to) => window.mesh.send(to, 'offline-direct'), pages[0].id);
  sent.push([pages[2].id, direct]);
  await waitFor(async () => {
    const got = await received(pages[0], 'offline');
    return got.length >= 41;
  }, 15_000, 'offline messages arrived at page 0');
  await waitFor(() => allReceived('offline-', sent.filter(([, id]) => id !== direct)), 15_000, 'offline room messages arrived');
  for (const m of pages) {
    const got = (await received(m, 'offline')).filter((k) => k !== `${pages[2].id}:${direct}`);
    assertExactlyOnce(m.kind, got, sent.filter(([, id]) => id !== direct), m.id);
  }
  const rtc = await pages[0].page.evaluate(() => window.mesh.getDetailedStats().routes.peers.map((p) => p.routes.find((r) => r.route === 'rtc').msgsIn));
  assert.ok(rtc.every((n) => n > 0), `rtc traffic ${rtc}`);
  broker = await startBroker({ port: broker.port });
  await waitFor(async () => {
    for (const m of pages) if (!(await m.page.evaluate(() => window.mesh.connected))) return false;
    return true;
  }, 20_000, 'the pages reconnect');
});

test('a closed data channel falls back to the broker', { timeout: 60_000 }, async () => {
  const [a, b] = pages;
  await waitFor(rtcUpEverywhere, 20_000, 'data channels up');
  const closed = await a.page.evaluate(() => window.closeChannels());
  assert.ok(closed >= 1);
  const t0 = Date.now();
  const id = await a.page.evaluate((to) => window.mesh.send(to, 'fallback'), b.id);
  await waitFor(async () => (await received(b, 'fallback')).includes(`${a.id}:${id}`), 10_000, 'the message arrived');
  console.log(`# fallback after closing the data channel: delivered ${Date.now() - t0} ms after sending`);
  assert.equal((await received(b, 'fallback')).length, 1);
});

test('1,000 messages with routes failing and recovering: each page gets each exactly once', { timeout: 180_000 }, async () => {
  const sent = [];
  const sending = pages.map(async (m, i) => {
    const n = i === 0 ? 334 : 333;
    for (const id of await sendRoom(m, n, `run${i}`, 15)) sent.push([m.id, id]);
  });
  // Failures while the pages send: data channels closed, the broker stopped and restarted.
  const chaos = (async () => {
    await sleep(1_000);
    await pages[1].page.evaluate(() => window.closeChannels());
    await sleep(1_000);
    await broker.stop();
    await sleep(2_000);
    broker = await startBroker({ port: broker.port });
    await sleep(1_000);
    await pages[2].page.evaluate(() => window.closeChannels());
    await sleep(500);
    await pages[0].page.evaluate(() => window.closeChannels());
  })();
  await Promise.all([...sending, chaos]);
  assert.equal(sent.length, 1_000);
  try {
    await waitFor(() => allReceived('run', sent), 60_000, 'every page received every message');
  } catch (e) {
    for (const m of pages) {
      const got = await received(m, 'run');
      const c = await m.page.evaluate(() => window.mesh.getDetailedStats().routes);
      console.log(`# ${m.kind}: ${got.length} of ${sent.filter(([f]) => f !== m.id).length}; ${JSON.stringify(c.counters)} pending ${c.pending} held ${c.held}`);
      console.log(`#   ${JSON.stringify(c.peers.map((p) => [p.device.slice(0, 6), p.best, p.rtc, p.pending, p.routes.map((r) => [r.route, r.up, r.breaker])]))}`);
    }
    throw e;
  }
  await sleep(1_000); // late duplicates would show now
  for (const m of pages) assertExactlyOnce(m.kind, await received(m, 'run'), sent, m.id);
  for (const m of pages) assertSenderOrder(m.kind, await m.page.evaluate(() => window.received.filter((r) => r.text?.startsWith('run'))));
  for (const m of pages) assert.deepEqual(m.errors, []);
});
