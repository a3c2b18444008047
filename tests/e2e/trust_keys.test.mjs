// The device's own key in the browser (issue #15): generated in wasm, kept in IndexedDB
// wrapped by a non-extractable WebCrypto AES-GCM key, reused across starts; credentials
// from the venue's CA are checked against it at open (BAD_CREDENTIALS, REVOKED).
// e2e engines: chromium webkit
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BROKER, browserAndBroker, openPage, venueCa } from './lib.mjs';
import * as T from '../ca/trust.mjs';

const env = browserAndBroker();
const VENUE = `keys-${Date.now().toString(36)}`;

async function blank(t) {
  const d = await openPage(env.browser, '/tests/e2e/pages/blank.html');
  t.after(() => d.context.close().catch(() => {}));
  await d.page.waitForFunction(() => window.ready, null, { timeout: 10_000 });
  return d.page;
}

const request = (page, opts = {}) => page.evaluate((o) => window.VenueMesh.createPairingRequest(o).then((r) => ({ ...r })), { venue: VENUE, ...opts });
/** `VenueMesh.open` with a bundle: 'ok' (then closed) or the error code. */
const openWith = (page, credentials) => page.evaluate(async ([venue, broker, credentials]) => {
  try {
    const m = await window.VenueMesh.open({ venue, brokers: [broker], credentials });
    const id = m.deviceId;
    await m.close();
    return `ok ${id}`;
  } catch (e) { return e.code ?? String(e); }
}, [VENUE, BROKER, credentials]);

test('the device key is made once, kept wrapped by a non-extractable AES-GCM key, and certifiable', { timeout: 60_000 }, async (t) => {
  const page = await blank(t);
  const first = await request(page);
  assert.equal(first.venue, VENUE);
  assert.equal(Buffer.from(first.publicKey, 'base64').length, 32);
  const again = await request(page);
  assert.deepEqual(again, first, 'the stored key is reused');
  const record = await page.evaluate((venue) => new Promise((resolve, reject) => {
    const r = indexedDB.open(`venuemesh-${venue}`);
    r.onerror = () => reject(r.error);
    r.onsuccess = () => {
      const get = r.result.transaction('meta').objectStore('meta').get('device_key');
      get.onsuccess = async () => {
        const k = get.result;
        let exported = 'exported';
        try { await crypto.subtle.exportKey('raw', k.wrapKey); } catch (e) { exported = e.name; }
        resolve({ keys: Object.keys(k).sort(), device: k.device, extractable: k.wrapKey.extractable, alg: k.wrapKey.algorithm.name,
          sealed: k.sealed.length, exported, isCryptoKey: k.wrapKey instanceof CryptoKey });
        r.result.close();
      };
    };
  }), VENUE);
  assert.deepEqual(record, { keys: ['device', 'iv', 'sealed', 'v', 'wrapKey'], device: first.device, extractable: false, alg: 'AES-GCM',
    sealed: 48, exported: 'InvalidAccessError', isCryptoKey: true });
  const ca = venueCa(VENUE);
  assert.equal(await openWith(page, JSON.stringify(ca.bundle(first.device, Buffer.from(first.publicKey, 'base64')))), `ok ${first.device}`);
  // a new device id makes a new key
  const other = await request(page, { device: 'pos-7' });
  assert.equal(other.device, 'pos-7');
  assert.notEqual(other.publicKey, first.publicKey);
});

test('credentials that do not fit this device are refused with BAD_CREDENTIALS or REVOKED', { timeout: 60_000 }, async (t) => {
  const page = await blank(t);
  const req = await request(page, { device: 'pos-1' });
  const pk = Buffer.from(req.publicKey, 'base64');
  const ca = venueCa(VENUE);
  assert.equal(await openWith(page, ca.bundle('pos-1', T.keyPair().pk)), 'BAD_CREDENTIALS', 'another key');
  assert.equal(await openWith(page, ca.bundle('pos-2', pk)), 'BAD_CREDENTIALS', 'another device id');
  assert.equal(await openWith(page, { ...ca.bundle('pos-1', pk), venue: 'elsewhere' }), 'BAD_CREDENTIALS', 'another venue');
  assert.equal(await openWith(page, ca.bundle('pos-1', pk, { role: 'cloud' })), 'BAD_CREDENTIALS', 'a cloud certificate');
  assert.equal(await openWith(page, ca.bundle('pos-1', pk, { notAfter: Date.now() - 3_600_000 })), 'BAD_CREDENTIALS', 'expired');
  const forged = ca.bundle('pos-1', pk);
  forged.rootPublicKey = T.keyPair().pk.toString('base64'); // a root of one's own making
  assert.equal(await openWith(page, forged), 'BAD_CREDENTIALS', 'chain not from that root');
  const revoking = T.createCa({ venue: VENUE });
  revoking.revoke(pk);
  assert.equal(await openWith(page, revoking.bundle('pos-1', pk)), 'REVOKED');
  assert.equal(await openWith(page, ca.bundle('pos-1', pk)), 'ok pos-1', 'the right bundle opens');
});
