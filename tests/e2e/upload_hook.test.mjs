// The `upload` option: the hub hands batches to the app's function instead of
// the broker's `up` topic; a rejected batch is retried (backoff from 1 s), a
// resolved one makes every holder mark its commands cloud_ack (the hub
// publishes the CLOUD_ACK itself).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { launch, startBroker, sleep, meshMember, waitFor } from './lib.mjs';

let browser, broker;
before(async () => { browser = await launch(); broker = await startBroker(); });
after(async () => { await browser?.close(); await broker?.stop(); });

const member = (venue, kind, extra = {}) =>
  meshMember(browser, broker.url, venue, kind, { drain: '300', upload: '1', ...extra });


test('the hub uploads through the app function, retries a rejected batch, and cloud acks reach every holder',
  { timeout: 60_000 }, async () => {
    const venue = `e2e-hook-${Date.now().toString(36)}`;
    const kiosk = await member(venue, 'kiosk');
    const pos = await member(venue, 'pos');
    await waitFor(async () => (await pos.page.evaluate(() => window.mesh.hub)) === kiosk.id, 10_000, 'the kiosk is hub');
    const ids = await pos.page.evaluate(async () => {
      const out = [];
      for (let i = 0; i < 20; i++) out.push(await window.mesh.enqueue('sale', `{"i":${i}}`));
      return out;
    });
    const cloudAcked = (m) => m.page.evaluate(() => window.mesh.queue.countByStatus().cloudAck);
    await waitFor(async () => (await cloudAcked(pos)) === 20 && (await cloudAcked(kiosk)) === 20, 20_000,
      'both holders mark the 20 commands cloud_ack');
    const uploads = await kiosk.page.evaluate(() => window.uploads);
    assert.equal(uploads[0].ok, false, 'the first call was refused');
    const accepted = uploads.filter((u) => u.ok).flatMap((u) => u.ids);
    assert.deepEqual(new Set(accepted), new Set(ids), 'every command was accepted by the backend');
    assert.equal(accepted.length, 20, 'each exactly once after the refused batch');
    assert.deepEqual(await pos.page.evaluate(() => window.uploads), [], 'only the hub uploads');
    assert.deepEqual([...kiosk.errors, ...pos.errors], []);
  });
