// The demo's Trust card (issue #15): the manager's iPad (?admin=1, certified as admin by the
// venue server) invites a new device with a one-time code; the new device opens the invite
// link, pairs with the code and joins; the admin revokes it: the signed revocation list is
// retained on the broker. Screenshots of each step go to .run/screenshots/.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import mqtt from 'mqtt';
import { launch, startBroker, demoUrl, BASE, waitFor } from './lib.mjs';
import * as T from '../ca/trust.mjs';

const SHOTS = fileURLToPath(new URL('../../.run/screenshots/', import.meta.url));
const IPAD = { width: 1024, height: 1366 };
let browser, broker;
before(async () => { [browser, broker] = await Promise.all([launch(), startBroker()]); });
after(async () => { await browser?.close(); await broker?.stop(); });

async function open(path) {
  const context = await browser.newContext({ viewport: IPAD, hasTouch: true, deviceScaleFactor: 1 });
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(e));
  await page.goto(`${BASE}${path}`);
  await page.waitForSelector('#conn[data-state="connected"]', { timeout: 20_000 });
  return { context, page, errors, id: (await page.textContent('#device-id')).trim() };
}

async function shot(d, name) {
  await d.page.locator('#trust-card').scrollIntoViewIfNeeded();
  const png = await d.page.screenshot({ fullPage: false });
  mkdirSync(SHOTS, { recursive: true });
  writeFileSync(`${SHOTS}${name}.png`, png);
  assert.ok(png.length > 20_000, `${name}: a real picture (${png.length} bytes)`);
}

test('the admin iPad admits a device with a code and revokes it', { timeout: 90_000 }, async (t) => {
  const venue = `e2e-trust-demo-${Date.now().toString(36)}`;
  const admin = await open(demoUrl({ venue, broker: broker.url, hb: '300', admin: '1', db: `adm-${Date.now()}` }));
  t.after(() => admin.context.close());
  assert.match(await admin.page.textContent('#trust-role'), /^admin/);
  await admin.page.click('#invite');
  await admin.page.waitForFunction(() => /^[A-Z2-7]{4}(-[A-Z2-7]{4}){4}$/.test(document.getElementById('invite-code').textContent));
  const code = await admin.page.textContent('#invite-code');
  const link = await admin.page.getAttribute('#invite-link', 'href');
  assert.ok(link.includes(`code=${code}`) && !link.includes('admin=1'), link);
  await shot(admin, 'trust-1-admin-invite');

  const fresh = await open(link);
  t.after(() => fresh.context.close());
  assert.match(await fresh.page.textContent('#trust-role'), /^device/);
  await waitFor(() => admin.page.evaluate((id) => window.mesh.getDetailedStats().peers.some((p) => p.device === id), fresh.id), 15_000,
    'the admitted device is a peer of the admin');
  await admin.page.waitForFunction(() => document.getElementById('invite-code').textContent === '–', null, { timeout: 10_000 });
  // Its chain as it attaches it to its envelopes (the stored bundle is sealed under its device key).
  const watcher = await mqtt.connectAsync(broker.url);
  t.after(() => watcher.endAsync(true));
  const chain = await new Promise((resolve) => {
    watcher.on('message', (_topic, payload) => {
      try { const e = T.parseEnvelope(payload); if (e.chain && e.sender === fresh.id) resolve(T.decodeChain(e.chain.bytes)); } catch { /* not an envelope */ }
    });
    watcher.subscribeAsync([`vm/${venue}/presence/${fresh.id}`, `vm/${venue}/hb/${fresh.id}`], { qos: 0 });
  });
  assert.deepEqual(chain.map((c) => c.subject), [fresh.id, admin.id], 'certified by the admin iPad, whose certificate the root issued');
  await shot(fresh, 'trust-2-new-device-joined');
  await shot(admin, 'trust-3-admin-sees-it');

  // Revoke it from the admin's card.
  await admin.page.click(`#revoke-list button[data-device="${fresh.id}"]`);
  const spy = await mqtt.connectAsync(broker.url);
  t.after(() => spy.endAsync(true));
  const crls = [];
  spy.on('message', (topic, payload) => crls.push(Buffer.from(payload)));
  await spy.subscribeAsync(`vm/${venue}/crl`, { qos: 1 });
  await waitFor(() => crls.length > 0, 10_000, 'the CRL is retained on the broker');
  const crl = T.openCrl(crls[0], { rootPk: T.demoCa(venue).root.pk, venue });
  assert.deepEqual(crl.fps, [T.fp(chain[0].pk).toString('hex')], 'it names exactly the revoked device\'s key, signed by the admin');
  await shot(admin, 'trust-4-admin-revoked');
  assert.deepEqual([...admin.errors, ...fresh.errors], []);
});
