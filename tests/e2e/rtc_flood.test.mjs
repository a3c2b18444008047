// WebRTC request bounds (issue #16): 300 signed RTC requests from fake ids
// must not exhaust Chromium's PeerConnections nor keep a real peer's data
// channel down. With envelope v2 (issue #15) each fake id needs a certificate
// of the venue: the flood plays the worst holder, one able to mint them (a
// stolen admin key, or the venue's server), each request signed by its own
// certified key with the chain attached.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import mqtt from 'mqtt';
import { launch, startBroker, BASE, waitFor, venueCa } from './lib.mjs';
import * as T from '../ca/trust.mjs';

const KIND_RTC_SIGNAL = 7;
const SIGNAL_REQUEST = 0x27;
let browser, broker, attacker;
before(async () => {
  browser = await launch();
  broker = await startBroker();
  attacker = await mqtt.connectAsync(`mqtt://127.0.0.1:${broker.tcp}`, { reconnectPeriod: 0 });
});
after(async () => {
  await attacker?.endAsync();
  await browser?.close();
  await broker?.stop();
});

/** A routing page that counts its live PeerConnections (created − closed) and their peak. */
async function member(venue, kind) {
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.addInitScript(() => {
    const Native = window.RTCPeerConnection;
    if (typeof Native !== 'function') return;
    window.pcLive = 0;
    window.pcPeak = 0;
    window.RTCPeerConnection = class extends Native {
      constructor(...a) {
        super(...a);
        window.pcLive++;
        window.pcPeak = Math.max(window.pcPeak, window.pcLive);
        this._counted = true;
      }
      close() {
        if (this._counted) { this._counted = false; window.pcLive--; }
        return super.close();
      }
    };
  });
  const q = new URLSearchParams({ venue, broker: broker.url, kind, hb: '300', room: 'chat' });
  await page.goto(`${BASE}/tests/e2e/pages/routing.html?${q}`);
  await page.waitForFunction(() => window.mesh || window.openError, null, { timeout: 10_000 });
  assert.equal(await page.evaluate(() => window.openError ?? null), null);
  return { context, page, kind, id: await page.evaluate(() => window.mesh.deviceId) };
}

test('300 fake RTC requesters: PeerConnections stay capped and a real peer\'s channel still opens', { timeout: 120_000 }, async (t) => {
  const venue = `e2e-rtcflood-${Date.now().toString(36)}`;
  const target = await member(venue, 'pos');
  t.after(() => target.context.close().catch(() => {}));
  // Fake ids sort after any real (hex) id, so the target is the offerer:
  // every admitted request makes it create a PeerConnection.
  const counter = T.counterFloor();
  const ca = venueCa(venue); // the CA the pages are certified by
  for (let i = 0; i < 300; i++) {
    const sender = `zz-fake-${String(i).padStart(3, '0')}`;
    const fake = ca.device(sender);
    const env = T.seal({ key: fake.key, venue, sender, kind: KIND_RTC_SIGNAL, counter: counter + BigInt(i), body: Buffer.from([SIGNAL_REQUEST]),
      chain: fake.chain, contentKey: ca.keys[0].key, epoch: ca.keys[0].epoch });
    attacker.publish(`vm/${venue}/dev/${target.id}/rtc`, env, { qos: 1 });
  }
  await waitFor(async () => (await target.page.evaluate(() => window.mesh.getDetailedStats().security.rtcShed)) > 0,
    15_000, 'the target sheds requests beyond its PeerConnection slots');
  const real = await member(venue, 'kiosk');
  t.after(() => real.context.close().catch(() => {}));
  await waitFor(async () => {
    await real.page.evaluate(() => window.mesh.send('chat', 'hi'));
    const r = await target.page.evaluate((peer) => window.routeOf(peer), real.id);
    return r?.rtcUp === true;
  }, 40_000, 'the real peer\'s data channel opens despite the flood', { every: 500 });
  const s = await target.page.evaluate(() => ({ sec: window.mesh.getDetailedStats().security, peak: window.pcPeak, live: window.pcLive }));
  console.log(`# 300 fake requesters: peak ${s.peak} live PeerConnections, rtcShed ${s.sec.rtcShed}, rtcEvicted ${s.sec.rtcEvicted}`);
  assert.ok(s.peak <= 25, `PeerConnections capped (peak ${s.peak})`);
});
