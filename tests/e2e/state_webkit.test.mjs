// e2e engines: webkit
// Shared state (issue #18) in WebKit (Safari's engine: Debian's WebKitGTK
// MiniBrowser over WebDriver, ./webkit.mjs) beside a Chromium page, on one
// private broker: the core scenario of state.test.mjs — seed 001's edit made
// apart on both (the later wins everywhere, both audit local/remote/final),
// two lanes selling apart (counters add up), and WebKit's IndexedDB keeping
// acknowledged writes across a reload. This WebKit has no WebRTC, so the
// broker is the only route, and stopping it keeps the pages apart.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { launchChromium, launchWebKit, startBroker, meshMember, waitFor, sleep } from './lib.mjs';

let webkit, chromium, broker;
before(async () => {
  [webkit, chromium, broker] = await Promise.all([launchWebKit(), launchChromium(), startBroker()]);
});
after(async () => {
  await Promise.all([webkit?.close(), chromium?.close()]);
  await broker?.stop();
});

const call = (m, c, method, ...args) => m.page.evaluate(([c, method, args]) => window.mesh.collection(c)[method](...args), [c, method, args]);
const get = (m, c, key) => call(m, c, 'get', key);

test('WebKit and Chromium: an edit made apart on both, the later wins on both and both audit it; lanes add up; WebKit keeps acked writes across a reload', { timeout: 240_000 }, async () => {
  const venue = `e2e-state-wk-${Date.now().toString(36)}`;
  const w = await meshMember(webkit, broker.url, venue, 'ipad', { webrtc: '0' });
  const c = await meshMember(chromium, broker.url, venue, 'pos', { webrtc: '0' });
  try {
    await waitFor(async () => (await w.page.evaluate(() => window.mesh.getDetailedStats().peers.length)) === 1
      && (await c.page.evaluate(() => window.mesh.getDetailedStats().peers.length)) === 1, 30_000, 'the two pages see each other');
    await call(w, 'products', 'put', 'sku-1', { name: 'Tea', price: 3 });
    await call(c, 'stock', 'increment', 'sku-1', 'qty', 100);
    await waitFor(async () => (await get(c, 'products', 'sku-1'))?.price === 3 && (await get(w, 'stock', 'sku-1'))?.qty === 100, 20_000, 'both have both');
    const { port, tcp } = broker;
    await broker.stop();
    await call(c, 'products', 'patch', 'sku-1', { price: 4 });
    await call(w, 'stock', 'increment', 'sku-1', 'qty', -5);
    await call(c, 'stock', 'increment', 'sku-1', 'qty', -5);
    await sleep(50);
    await call(w, 'products', 'patch', 'sku-1', { price: 5 }); // the later edit, in WebKit
    broker = await startBroker({ port, tcp });
    await waitFor(async () => {
      const got = await Promise.all([w, c].flatMap((m) => [get(m, 'products', 'sku-1'), get(m, 'stock', 'sku-1')]));
      return got[0]?.price === 5 && got[2]?.price === 5 && got[1]?.qty === 90 && got[3]?.qty === 90;
    }, 60_000, 'the later edit and 90 on both');
    for (const [m, local, remote] of [[w, 5, 4], [c, 4, 5]]) {
      const e = (await m.page.evaluate(() => window.mesh.audit.conflicts({ collection: 'products' }))).at(-1);
      assert.ok(e, `${m.kind} audited the conflict`);
      assert.deepEqual([e.local?.price, e.remote.price, e.final?.price], [local, remote, 5], `${m.kind}: local, remote, final`);
    }
    // WebKit's IndexedDB: every acknowledged write is there after a reload.
    const acked = await w.page.evaluate(async () => {
      const col = window.mesh.collection('products');
      await Promise.all(Array.from({ length: 20 }, (_, i) => col.put(`p-${i}`, { price: i })));
      return 20;
    });
    await w.page.reload();
    await w.page.waitForFunction(() => window.mesh || window.openError, null, { timeout: 20_000 });
    for (let i = 0; i < acked; i++) assert.equal((await get(w, 'products', `p-${i}`))?.price, i, `p-${i} survived the reload`);
    assert.equal((await get(w, 'products', 'sku-1'))?.price, 5);
  } finally {
    await Promise.all([w.context.close(), c.context.close()]).catch(() => {});
  }
});
