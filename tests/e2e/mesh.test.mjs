// Hub election with real pages and the real broker: the best score becomes
// hub, a closed hub and a hung hub are replaced, and no two pages act as
// hub in the same term.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { launch, startBroker, BASE, sleep } from './lib.mjs';

let browser, broker;
before(async () => { browser = await launch(); broker = await startBroker(); });
after(async () => { await browser?.close(); await broker?.stop(); });

async function member(venue, kind, extra = {}) {
  const context = await browser.newContext();
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(e));
  const q = new URLSearchParams({ venue, broker: broker.url, kind, hb: '300', ...extra });
  await page.goto(`${BASE}/tests/e2e/pages/mesh.html?${q}`);
  await page.waitForFunction(() => window.mesh || window.openError, null, { timeout: 10_000 });
  assert.equal(await page.evaluate(() => window.openError ?? null), null);
  const id = await page.evaluate(() => window.mesh.deviceId);
  kinds.set(id, kind);
  return { context, page, id, kind, errors };
}

const hubOf = (m) => m.page.evaluate(() => window.mesh.hub);
const eventsOf = (m, name) => m.page.evaluate((n) => window.events.filter((e) => e.ev === n), name);

const kinds = new Map();
const named = (id) => `${kinds.get(id) ?? '?'}:${String(id).slice(0, 8)}`;

async function waitAgree(members, expected, ms = 10_000) {
  const until = Date.now() + ms;
  let seen;
  while (Date.now() < until) {
    seen = await Promise.all(members.map(hubOf));
    if (seen.every((h) => h === expected)) return;
    await sleep(50);
  }
  assert.fail(`members did not agree on hub ${named(expected)}: ${JSON.stringify(seen.map(named))}`);
}

/** Every becomeHub across pages must be in a distinct term (number, hub). */
async function assertOneHubPerTerm(members) {
  const terms = new Map();
  for (const m of members) {
    for (const e of await eventsOf(m, 'becomeHub').catch(() => [])) {
      const key = `${e.term.number}/${e.term.hub}`;
      assert.equal(e.term.hub, m.id, 'a page only becomes hub in its own term');
      assert.ok(!terms.has(key), `term ${key} acted twice`);
      terms.set(key, m.id);
    }
  }
  return terms;
}

test('the best score becomes hub, once; everyone agrees', { timeout: 60_000 }, async () => {
  const venue = `e2e-elect-${Date.now()}`;
  const phone = await member(venue, 'phone');
  const kiosk = await member(venue, 'kiosk');
  const ipad = await member(venue, 'ipad', { charging: '1' });
  const all = [phone, kiosk, ipad];
  await waitAgree(all, kiosk.id);
  await sleep(1_000); // a settled mesh stays settled
  await waitAgree(all, kiosk.id, 1_000);
  assert.equal((await eventsOf(kiosk, 'becomeHub')).length, 1, 'becomeHub fired exactly once');
  assert.equal((await eventsOf(kiosk, 'loseHub')).length, 0);
  const stats = await kiosk.page.evaluate(() => window.mesh.getDetailedStats());
  assert.equal(stats.role, 'hub');
  assert.deepEqual(stats.peers.map((p) => p.device).sort(), [phone.id, ipad.id].sort());
  assert.ok(stats.security.accepted > 0);
  await assertOneHubPerTerm(all);
  for (const m of all) { assert.deepEqual(m.errors, []); await m.context.close(); }
});

test('closing the hub page elects the next best; a hung hub is replaced', { timeout: 90_000 }, async () => {
  const venue = `e2e-failover-${Date.now()}`;
  const kiosk = await member(venue, 'kiosk');
  const ipad = await member(venue, 'ipad', { charging: '1' });
  const pos = await member(venue, 'pos');
  const phone = await member(venue, 'phone');
  await waitAgree([kiosk, ipad, pos, phone], kiosk.id);

  // 1. The hub's page goes away: its Will (or clean leave) clears presence.
  await kiosk.context.close();
  await waitAgree([ipad, pos, phone], pos.id); // POS 750+ beats a charging iPad 500+
  assert.equal((await eventsOf(pos, 'becomeHub')).length, 1);

  // 2. The new hub hangs (JS paused): missed heartbeats replace it.
  const cdp = await pos.context.newCDPSession(pos.page);
  await cdp.send('Debugger.enable');
  await cdp.send('Debugger.pause');
  await waitAgree([ipad, phone], ipad.id);
  const left = await eventsOf(phone, 'peerLeft');
  assert.ok(left.some((e) => e.device === kiosk.id), 'the closed kiosk left');
  await cdp.send('Debugger.resume');
  // The resumed old hub sees the higher term and steps down; with the best
  // score (beyond the hysteresis margin) it then wins a new, higher term.
  await waitAgree([ipad, pos, phone], pos.id, 15_000);
  assert.ok((await eventsOf(pos, 'loseHub')).length >= 1, 'the old hub stepped down');
  assert.ok((await eventsOf(pos, 'becomeHub')).length >= 2, 'and came back in a new term');
  assert.ok((await eventsOf(ipad, 'loseHub')).length >= 1, 'the interim hub handed over');
  const terms = await assertOneHubPerTerm([ipad, pos, phone]);
  assert.ok(terms.size >= 3);
  for (const m of [ipad, pos, phone]) await m.context.close();
});

test('a device certified by another root is not part of the mesh', { timeout: 60_000 }, async () => {
  const venue = `e2e-key-${Date.now()}`;
  const a = await member(venue, 'kiosk');
  const b = await member(venue, 'phone');
  const intruder = await member(venue, 'kiosk', { ca: 'intruder' }); // pages/pair.mjs: a CA of its own
  await waitAgree([a, b], a.id);
  await sleep(1_500);
  const stats = await a.page.evaluate(() => window.mesh.getDetailedStats());
  assert.deepEqual(stats.peers.map((p) => p.device), [b.id], 'the intruder is not a peer');
  assert.ok(stats.security.badChain > 0, 'its messages were refused: their chain does not lead to the venue root');
  assert.equal(await hubOf(intruder), intruder.id, 'alone in its own mesh, it elects itself');
  for (const m of [a, b, intruder]) await m.context.close();
});

test('terms survive a reload: the reloaded hub claims a higher term', { timeout: 60_000 }, async () => {
  const venue = `e2e-reload-${Date.now()}`;
  const a = await member(venue, 'kiosk', { db: `reload-${Date.now()}` });
  await waitAgree([a], a.id);
  const [first] = await eventsOf(a, 'becomeHub');
  // A fresh broker session cannot remember the term: only IndexedDB can.
  // Clear the retained hub claim so the page cannot learn it from there.
  await a.page.evaluate(async (topic) => {
    const { MqttClient } = await import('/pkg/venuemesh.js');
    const c = await MqttClient.connect({ brokers: [new URLSearchParams(location.search).get('broker')] });
    await c.publish(topic, new Uint8Array(), { qos: 1, retain: true });
    c.close();
  }, `vm/${venue}/hub`);
  await a.page.reload();
  await a.page.waitForFunction(() => window.mesh || window.openError, null, { timeout: 10_000 });
  await waitAgree([a], a.id);
  const [second] = await eventsOf(a, 'becomeHub');
  assert.ok(second.term.number > first.term.number, `term ${second.term.number} must exceed ${first.term.number}`);
  await a.context.close();
});
