// A routing path the three-page tests do not take, with real pages and a real
// Mosquitto: a room of six devices (too big to mesh: one publish on
// `vm/{venue}/topic/{room}` per message). The other one, two devices that are
// tabs of one browser profile, is tabs.test.mjs.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { browserAndBroker, meshMember, waitFor, assertExactlyOnce, assertSenderOrder,
  meshStats as stats, sendTexts as send, receivedWith as records } from './lib.mjs';

const env = browserAndBroker();

/** A routing page (pages/routing.mjs) in a fresh context: its own device. */
const member = (venue, kind, extra = {}) => meshMember(env.browser, env.broker.url, venue, kind, extra, { page: 'routing' });

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
