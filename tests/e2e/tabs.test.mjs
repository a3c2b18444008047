// e2e engines: chromium webkit
// Two devices that are tabs of one browser profile (two IndexedDB names, one
// BroadcastChannel) use the tab route, and keep messaging, electing and
// replicating over it with the broker stopped. In WebKit (no WebRTC) the tab
// and the broker are the only routes there are, so this is Safari's
// peer-to-peer path between tabs.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { browserAndBroker, meshMember, waitFor, assertExactlyOnce,
  meshStats as stats, sendTexts as send, receivedWith as records } from './lib.mjs';

const env = browserAndBroker();

/** A routing page (pages/routing.mjs) in `context` (a fresh one if none). */
const member = (venue, kind, { context, ...extra } = {}) =>
  meshMember(env.browser, env.broker.url, venue, kind, extra, { page: 'routing', context });

test('two devices in one browser profile use the tab route, and keep going on it without a broker',
  { timeout: 90_000 }, async () => {
    const venue = `e2e-tabs-${Date.now().toString(36)}`;
    // One profile, two IndexedDB names: two devices that share a BroadcastChannel.
    // Without WebRTC, the tab is their only route besides the broker: Chromium
    // is told so (webrtc=0); WebKit, which has no RTCPeerConnection, finds out itself.
    const webkit = env.browser.engine === 'webkit';
    const noRtc = webkit ? {} : { webrtc: '0' };
    const a = await member(venue, 'kiosk', { db: `vm-a-${venue}`, ...noRtc });
    const b = await member(venue, 'pos', { db: `vm-b-${venue}`, ...noRtc, context: a.context });
    assert.notEqual(a.id, b.id);
    assert.equal((await stats(a)).routes.webrtc, webkit ? 'unavailable' : 'off');
    assert.equal((await stats(a)).routes.tab, 'on');
    const tabUp = async (m, peer) => (await stats(m)).routes.peers.find((p) => p.device === peer)?.routes.find((r) => r.route === 'tab')?.up;
    await waitFor(async () => (await tabUp(a, b.id)) && (await tabUp(b, a.id)), 15_000, 'each page has a tab route to the other');
    await waitFor(async () => (await a.page.evaluate(() => window.mesh.hub)) === a.id && (await b.page.evaluate(() => window.mesh.hub)) === a.id,
      10_000, 'the kiosk is the hub');

    const before = await send(a, b.id, ['tab-0', 'tab-1', 'tab-2']);
    await waitFor(async () => (await records(b, 'tab-')).length === 3, 10_000, 'b got the three messages');
    const viaTab = (await stats(b)).routes.peers.find((p) => p.device === a.id).routes.find((r) => r.route === 'tab');
    assert.ok(viaTab.msgsIn > 0, `b received on the tab route: ${JSON.stringify(viaTab)}`);

    await env.broker.stop();
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
