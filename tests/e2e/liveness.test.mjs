// Liveness under partial failures (issue #17) with real pages and the real
// broker, on the library's default timers (heartbeat 5 s, MQTT keepalive 30 s):
// a broker link that stops delivering while the device keeps sending is
// noticed, and the device stops acting as a hub of a partition of one.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { launch, startBroker, startLinkProxy, meshMember, waitFor } from './lib.mjs';

let browser, broker;
before(async () => {
  browser = await launch();
  broker = await startBroker();
});
after(async () => {
  await browser?.close();
  await broker?.stop();
});

const DEFAULT_TIMERS = { hb: '5000' }; // the page's default is the fast 300 ms
const state = (m) => m.page.evaluate(() => ({ connected: window.mesh.connected, hub: window.mesh.hub, isHub: window.mesh.isHub }));
const counts = (m) => m.page.evaluate(() => window.mesh.queue.countByStatus());
const eventsSince = (m, t0, names) => m.page.evaluate(([t0, names]) =>
  window.events.filter((e) => e.at >= t0 && names.includes(e.ev)).map((e) => ({ ev: e.ev, at: e.at })), [t0, names]);

test('a blackholed broker link is noticed while the device keeps sending heartbeats', { timeout: 150_000 }, async (t) => {
  const venue = `e2e-live-bh-${Date.now().toString(36)}`;
  const proxy = await startLinkProxy(broker.port);
  t.after(() => proxy.stop());
  const kiosk = await meshMember(browser, broker.url, venue, 'kiosk', { ...DEFAULT_TIMERS, webrtc: '0' });
  const pos = await meshMember(browser, broker.url, venue, 'pos', { ...DEFAULT_TIMERS, webrtc: '0' });
  const phone = await meshMember(browser, proxy.url, venue, 'phone', { ...DEFAULT_TIMERS, webrtc: '0' });
  for (const m of [kiosk, pos, phone]) t.after(() => m.context.close().catch(() => {}));
  await waitFor(async () => (await Promise.all([kiosk, pos, phone].map(state))).every((s) => s.connected && s.hub === kiosk.id),
    20_000, 'every page connected, the kiosk hub');
  assert.equal(proxy.connections, 1, 'the phone talks to the broker through the proxy');

  const t0 = Date.now();
  proxy.blackhole();
  // The phone keeps publishing heartbeats into the void; it must notice.
  await waitFor(async () => !(await state(phone)).connected, 45_000, 'the phone reports disconnected (keepalive 30 s + 5 s)');
  const noticedAfter = Date.now() - t0;
  console.log(`# blackholed link noticed after ${noticedAfter} ms (bound: keepalive 30 s + ping timeout 5 s)`);
  // Alone, without the broker or a direct route, it does not act as hub.
  await waitFor(async () => !(await state(phone)).isHub, 5_000, 'the phone does not act as hub once disconnected');
  const hubSpells = await eventsSince(phone, t0, ['becomeHub', 'loseHub']);
  console.log(`# phone hub events during the blackhole: ${JSON.stringify(hubSpells.map((e) => `${e.ev}+${Math.round(e.at - t0)}ms`))}`);
  for (const m of [kiosk, pos]) {
    const s = await state(m);
    assert.equal(s.hub, kiosk.id, `${m.kind}: the real hub is unchanged`);
  }
  // Its sales wait pending, durable; healed, they reach peer_ack.
  const ids = await phone.page.evaluate(async () => {
    const out = [];
    for (let i = 0; i < 5; i++) out.push(await window.mesh.enqueue('sale', JSON.stringify({ i })));
    return out;
  });
  assert.equal(ids.length, 5);
  proxy.restore();
  await waitFor(async () => (await state(phone)).connected, 30_000, 'the phone reconnects once the link works');
  await waitFor(async () => (await counts(phone)).pending === 0, 30_000, 'its sales reach peer_ack after healing');
  const t1 = Date.now();
  await waitFor(async () => (await state(phone)).hub !== null, 90_000, 'the phone follows a hub again');
  console.log(`# after healing the phone follows ${(await state(phone)).hub === kiosk.id ? 'the kiosk' : 'another device'} after ${Date.now() - t1} ms`);
  for (const m of [kiosk, pos, phone]) console.log(`# ${m.kind}: ${JSON.stringify(await state(m))}`);
});
