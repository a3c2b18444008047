// Hardening (issue #16) against a private Mosquitto *without* a message size
// limit, so the client's own defences are what is tested (the shipped configs
// add `message_size_limit`): an oversized message is refused unread and
// counted, and the stall of one huge message fed slowly is noticed on the
// library's default timers instead of leaving the device "connected" while
// nothing arrives.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import mqtt from 'mqtt';
import { launch, startBroker, meshMember, meshStats, waitFor } from './lib.mjs';

let browser, broker, attacker;
before(async () => {
  browser = await launch();
  broker = await startBroker();
  // Anyone on the broker: no venue key, plain MQTT over the TCP listener.
  attacker = await mqtt.connectAsync(`mqtt://127.0.0.1:${broker.tcp}`, { reconnectPeriod: 0 });
});
after(async () => {
  await attacker?.endAsync();
  await browser?.close();
  await broker?.stop();
});

const state = (m) => m.page.evaluate(() => ({ connected: window.mesh.connected, hub: window.mesh.hub }));
const counts = (m) => m.page.evaluate(() => window.mesh.queue.countByStatus());

test('a message over the mesh packet limit is refused unread, counted, and the device recovers', { timeout: 120_000 }, async (t) => {
  const venue = `e2e-hard-big-${Date.now().toString(36)}`;
  // Default timers: Mosquitto's websockets listener feeds a big message out
  // slowly, and with the test page's fast ones (300 ms heartbeats) the stall
  // check would replace the socket before the message is whole.
  const opts = { webrtc: '0', hb: '5000' };
  const kiosk = await meshMember(browser, broker.url, venue, 'kiosk', opts);
  const pos = await meshMember(browser, broker.url, venue, 'pos', opts);
  for (const m of [kiosk, pos]) t.after(() => m.context.close().catch(() => {}));
  await waitFor(async () => (await Promise.all([kiosk, pos].map(state))).every((s) => s.connected && s.hub === kiosk.id),
    30_000, 'both connected, the kiosk hub');
  const before = await meshStats(pos);

  // 300 KB: under the MQTT client's generic 1 MiB bound, over the largest
  // envelope (256 KiB body) the mesh can ever receive.
  const t0 = Date.now();
  await attacker.publishAsync(`vm/${venue}/hb/evil`, Buffer.alloc(300 * 1024, 0x01), { qos: 0 });
  await waitFor(async () => (await meshStats(pos)).security.oversized >= 1, 30_000, 'the pos counts an oversized message');
  console.log(`# a 300 KB message refused after ${Date.now() - t0} ms`);
  const after = await meshStats(pos);
  assert.ok(after.broker.oversizedFrames >= 1, 'the broker link counts it too');
  // Never handed to the parser: no envelope counter moved for it.
  for (const k of ['badSignature', 'malformed', 'wrongVenue']) {
    assert.equal(after.security[k], before.security[k], `security.${k} unchanged: the parser never saw the frame`);
  }
  // The socket was replaced; the mesh works on: a sale reaches peer_ack.
  await waitFor(async () => (await state(pos)).connected, 15_000, 'the pos reconnects');
  await pos.page.evaluate(() => window.mesh.enqueue('sale', JSON.stringify({ total: 3 })));
  await waitFor(async () => (await counts(pos)).pending === 0, 20_000, 'the sale after the attack is replicated');
  console.log(`# oversized: ${after.security.oversized}, reconnects ${after.broker.reconnects - before.broker.reconnects}`);
});

test('one huge message fed slowly stalls the link: noticed on default timers, before the election gives up on peers', { timeout: 120_000 }, async (t) => {
  const venue = `e2e-hard-stall-${Date.now().toString(36)}`;
  const opts = { webrtc: '0', hb: '5000' }; // the library's defaults (the page's is 300 ms)
  const kiosk = await meshMember(browser, broker.url, venue, 'kiosk', opts);
  const pos = await meshMember(browser, broker.url, venue, 'pos', opts);
  for (const m of [kiosk, pos]) t.after(() => m.context.close().catch(() => {}));
  await waitFor(async () => (await Promise.all([kiosk, pos].map(state))).every((s) => s.connected && s.hub === kiosk.id),
    30_000, 'both connected, the kiosk hub');
  const before = await meshStats(pos);

  const t0 = Date.now();
  // 64 MB on a topic every device reads: Mosquitto's websockets listener
  // feeds it out slowly and the browser hands nothing over until it is whole.
  attacker.publish(`vm/${venue}/hb/evil`, Buffer.alloc(64 * 1024 * 1024, 0x02), { qos: 0 });
  await waitFor(async () => {
    const s = await meshStats(pos);
    return s.broker.reconnects > before.broker.reconnects || s.security.oversized > before.security.oversized;
  }, 30_000, 'the pos notices the stall (receive silence 1.5·I + ping timeout) and replaces its link');
  const noticed = Date.now() - t0;
  console.log(`# stall of a 64 MB message noticed after ${noticed} ms (bound 1.5 × 5 s + 5 s = 12.5 s; election silence G = 15 s)`);
  await waitFor(async () => (await state(pos)).connected, 20_000, 'the pos is connected again');
  await pos.page.evaluate(() => window.mesh.enqueue('sale', JSON.stringify({ total: 4 })));
  await waitFor(async () => (await counts(pos)).pending === 0, 30_000, 'a sale after the stall is replicated');
  console.log(`# after the stall: kiosk ${JSON.stringify(await state(kiosk))}, pos ${JSON.stringify(await state(pos))}`);
});
