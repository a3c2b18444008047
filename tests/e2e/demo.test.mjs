// The demo page as a person opens it: it loads the optimised package, creates
// a device identity that survives reload, and connects to the local broker.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { launch, openPage, demoUrl, nonLoopbackListeners } from './lib.mjs';

let browser;
before(async () => { browser = await launch(); });
after(async () => { await browser?.close(); });

test('demo page connects to the broker and shows it', async () => {
  const { page, context, errors } = await openPage(browser, demoUrl({ venue: 'e2e-demo' }));
  await page.waitForSelector('#conn[data-state="connected"]', { timeout: 10_000 });
  assert.match(await page.textContent('#broker'), /^ws:\/\/127\.0\.0\.1:\d+/);
  assert.match(await page.textContent('#device-id'), /^[0-9a-f-]{36}$/);
  assert.deepEqual(errors, []);
  await context.close();
});

test('device identity survives a reload and differs between devices', async () => {
  const a = await openPage(browser, demoUrl({ venue: 'e2e-id' }));
  const b = await openPage(browser, demoUrl({ venue: 'e2e-id' }));
  const idOf = async (p) => { await p.waitForFunction(() => window.mesh?.deviceId); return p.evaluate(() => window.mesh.deviceId); };
  const first = await idOf(a.page);
  await a.page.reload();
  assert.equal(await idOf(a.page), first, 'same device after reload');
  assert.notEqual(await idOf(b.page), first, 'another context is another device');
  await a.context.close(); await b.context.close();
});

test('nothing of ours listens on a non-loopback address while pages are open', async () => {
  const { context, page } = await openPage(browser, demoUrl({ venue: 'e2e-ss' }));
  await page.waitForSelector('#conn[data-state="connected"]', { timeout: 10_000 });
  assert.deepEqual(nonLoopbackListeners(), []);
  await context.close();
});
