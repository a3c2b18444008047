// Admission by an admin device (issue #15): the admin page shows a one-time code
// (mesh.pairing.invite()), the new device joins with it (VenueMesh.join) and gets a
// certificate the admin's key issued; a wrong, reused or expired code gets nothing, and
// only an admin certificate can invite.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import mqtt from 'mqtt';
import { browserAndBroker, openPage, venueCa } from './lib.mjs';
import * as T from '../ca/trust.mjs';

const env = browserAndBroker();
const VENUE = `pair-${Date.now().toString(36)}`;
// Open options every page passes besides its credentials.
const base = () => ({ venue: VENUE, brokers: [env.broker.url], heartbeatIntervalMs: 300 });

async function blank(t) {
  const d = await openPage(env.browser, '/tests/e2e/pages/blank.html');
  t.after(() => d.context.close().catch(() => {}));
  await d.page.waitForFunction(() => window.ready, null, { timeout: 10_000 });
  return d.page;
}

/** A page opened with a bundle of `role` from the venue CA (cloud admission). */
async function provisioned(t, device, role) {
  const page = await blank(t);
  const req = await page.evaluate((o) => window.VenueMesh.createPairingRequest(o).then((r) => ({ ...r })), { venue: VENUE, device });
  const bundle = venueCa(VENUE).bundle(device, Buffer.from(req.publicKey, 'base64'), { role });
  await page.evaluate(async ([o, b]) => { window.mesh = await window.VenueMesh.open({ ...o, credentials: b }); }, [base(), JSON.stringify(bundle)]);
  return page;
}

const invite = (page) => page.evaluate(() => {
  const i = window.mesh.pairing.invite();
  window.admitted = [];
  i.admitted.then((a) => window.admitted.push(a));
  return { code: i.code, inviteId: i.inviteId, expiresAt: i.expiresAt };
}).catch((e) => ({ error: e.message }));
const join = (page, extra) => page.evaluate(async (o) => {
  try {
    window.mesh = await window.VenueMesh.join(o);
    return { device: window.mesh.deviceId };
  } catch (e) { return { code: e.code, message: e.message }; }
}, { ...base(), ...extra });
/**
 * The certificate chain `device` attaches to its envelopes on the broker (its retained presence,
 * its heartbeats), decoded: what every peer checks. (The stored bundle is sealed under the device
 * key, so the test cannot read it back from IndexedDB.)
 */
async function chainOf(device) {
  const spy = await mqtt.connectAsync(env.broker.url, { clientId: `spy-${Date.now()}` });
  try {
    const got = new Promise((resolve) => spy.on('message', (_topic, payload) => {
      try { const e = T.parseEnvelope(payload); if (e.chain && e.sender === device) resolve(T.decodeChain(e.chain.bytes)); } catch { /* not an envelope */ }
    }));
    await spy.subscribeAsync([`vm/${VENUE}/presence/${device}`, `vm/${VENUE}/hb/${device}`], { qos: 0 });
    return await Promise.race([got, new Promise((_, reject) => setTimeout(() => reject(new Error(`no envelope of ${device} with its chain`)), 10_000))]);
  } finally {
    await spy.endAsync(true);
  }
}

test('an admin device admits a new device with a one-time code', { timeout: 60_000 }, async (t) => {
  const admin = await provisioned(t, 'ipad-admin', 'admin');
  const inv = await invite(admin);
  assert.match(inv.code, /^[A-Z2-7]{4}(-[A-Z2-7]{4}){4}$/, 'a 100-bit code in groups of four');
  assert.ok(inv.expiresAt > Date.now() + 9 * 60_000 && inv.expiresAt <= Date.now() + 10 * 60_000 + 5_000, 'valid for 10 minutes');
  const joiner = await blank(t);
  const joined = await join(joiner, { code: inv.code.toLowerCase().replaceAll('-', ' '), device: 'pos-new' });
  assert.deepEqual(joined, { device: 'pos-new' });
  await admin.waitForFunction(() => window.admitted.length === 1, null, { timeout: 5_000 });
  const admitted = await admin.evaluate(() => window.admitted[0]);
  const chain = await chainOf('pos-new');
  assert.equal(admitted.device, 'pos-new');
  assert.equal(admitted.publicKey, chain[0].pk.toString('base64'), 'the admin certified the key the new device made, and it speaks with it');
  assert.deepEqual([chain.length, chain[0].subject, chain[1].subject, T.ROLE_NAME[chain[0].role]], [2, 'pos-new', 'ipad-admin', 'device'],
    'a device certificate issued by the admin, the admin\'s own certificate from the root above it');
  // the code is single use
  const again = await join(await blank(t), { code: inv.code, device: 'pos-other', pairingTimeoutMs: 2_000 });
  assert.equal(again.code, 'PAIRING_FAILED');
});

test('wrong codes get nothing, and only an admin can invite', { timeout: 60_000 }, async (t) => {
  const admin = await provisioned(t, 'ipad-admin-2', 'admin');
  const inv = await invite(admin);
  const bad = inv.code.slice(0, -1) + (inv.code.endsWith('A') ? 'B' : 'A'); // one character off
  assert.equal((await join(await blank(t), { code: bad, device: 'pos-x', pairingTimeoutMs: 2_000 })).code, 'PAIRING_FAILED');
  assert.equal((await join(await blank(t), { code: 'not a code', device: 'pos-y' })).code, 'INVALID_ARGUMENT');
  assert.deepEqual(await admin.evaluate(() => window.admitted), [], 'nobody admitted');
  const device = await provisioned(t, 'pos-plain', 'device');
  const refused = await device.evaluate(() => { try { window.mesh.pairing.invite(); return null; } catch (e) { return e.code; } });
  assert.equal(refused, 'NOT_ADMIN');
});
